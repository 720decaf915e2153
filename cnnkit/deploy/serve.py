"""``cnnkit serve``: a web page and a JSON API for one model (FastAPI + uvicorn).

``GET /`` the page; ``POST /predict`` (multipart field ``file``; ``?overlay=true`` adds a PNG data URL: Grad-CAM
for a classifier on the PyTorch backend, the box drawn for a localiser, the boxes or masks of a detector or
segmenter, whose objects ``?conf=`` thresholds); ``GET /health``; ``/docs`` OpenAPI.
Limits a trusted server has: a body over ``max_bytes`` gets 413 before it is read in full, anything that does not
decode as an image 415 (decompression bombs included, through ``cnnkit.data.images``), more than
``max_in_flight`` requests at once 503 (no unbounded queue), an upload that stalls or dawdles 408 (it would
otherwise hold a place among them). The model is the one given at start; a request can never name a file to load.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoint annotations, imported inside create_app

import asyncio
import base64
import html
import io
import json
import socket
import threading
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from ..data.images import BadImageError, pil_to_tensor, read_image
from ..errors import CnnkitError
from .page import PAGE

PREDICT = "/predict"
UPLOAD_S = 60.0  # seconds for a whole upload
STALL_S = 10.0  # seconds without a byte of it


def decode_upload(data: bytes, shorter: int | None = None) -> Image.Image:
    """Uploaded bytes -> the upright Pillow image (the predictor converts its mode, takes its pixels once and
    resizes them as a tensor); anything but a complete, safe image raises BadImageError. ``shorter``: see
    :func:`upload_side`."""
    return read_image(io.BytesIO(data), shorter=shorter)


def upload_side(predictor: Any) -> int | None:
    """What :func:`decode_upload` is told for ``predictor``: a classifier's ``decode_side``, so a JPEG decodes as
    ``cnnkit predict`` decodes the same file (at 1/2 … 1/8 scale when that still covers the model's input: a
    12-megapixel photo decodes ~5× faster); None for the other tasks, whose answers (boxes, masks) are in the
    upload's own pixels."""
    return predictor.decode_side if predictor.card.task == "classify" else None


class Limits:
    """ASGI middleware for ``POST /predict``: 503 past ``max_in_flight`` requests at once, 413 for bodies over
    ``max_bytes`` (by Content-Length, or counted as the body arrives), 408 for a body that stalls for
    ``stall_s`` seconds or is not in within ``upload_s`` (a client that stops sending would otherwise hold its
    place among the ``max_in_flight`` for as long as it keeps the connection open), all before the app sees the
    request."""

    def __init__(self, app: Any, max_bytes: int, max_in_flight: int, upload_s: float = UPLOAD_S,
                 stall_s: float = STALL_S) -> None:  # fmt: skip
        self.app, self.max_bytes, self.max_in_flight = app, max_bytes, max_in_flight
        self.upload_s, self.stall_s = upload_s, min(stall_s, upload_s)
        self.in_flight = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PREDICT or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        if self.in_flight >= self.max_in_flight:
            return await _reply(send, 503, f"expected at most {self.max_in_flight} requests at once, found more;"
                                           " try again in a moment")  # fmt: skip
        self.in_flight += 1
        try:
            length = dict(scope["headers"]).get(b"content-length", b"0")
            body = await self._body(receive) if int(length or 0) <= self.max_bytes else None
            if body is None:
                return await _reply(send, 413, f"expected an upload of at most {self.max_bytes} bytes, found more")
            if isinstance(body, int):
                return await _reply(send, 408, f"expected the upload within {self.upload_s:g} s and no pause over"
                                               f" {self.stall_s:g} s, found it stopped after {body} bytes; send it"
                                               " again", close=True)  # fmt: skip
            await self.app(scope, _replay(body), send)
        finally:
            self.in_flight -= 1

    async def _body(self, receive: Any) -> bytes | int | None:
        """The whole body; None past ``max_bytes``; the bytes received so far (an int) when it stalls or is late."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.upload_s
        chunks, size, more = [], 0, True
        while more:
            try:
                message = await asyncio.wait_for(receive(), min(self.stall_s, deadline - loop.time()))
            except TimeoutError:
                return size
            if message["type"] == "http.disconnect":
                return b""
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return None
            more = message.get("more_body", False)
        return b"".join(chunks)


def _replay(body: bytes) -> Any:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _reply(send: Any, status: int, detail: str, close: bool = False) -> None:
    """A JSON ``{"detail": …}`` answer; ``close`` asks the server to close the connection after it (the rest of an
    unread body must not be taken for the next request)."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(predictor: Any, *, max_bytes: int = 10_000_000, max_in_flight: int = 4, backend: str = "eager",
               upload_s: float = UPLOAD_S, stall_s: float = STALL_S) -> Any:  # fmt: skip
    """The FastAPI app serving ``predictor`` (a ``cnnkit.load`` or ``load_onnx`` predictor); the limits as
    :class:`Limits` takes them."""
    from fastapi import FastAPI, File, HTTPException, Query, UploadFile
    from fastapi.responses import HTMLResponse

    card, lock = predictor.card, threading.Lock()  # one model call at a time: Grad-CAM hooks are not re-entrant
    side = upload_side(predictor)
    warm_up(predictor)
    app = FastAPI(title=f"cnnkit: {card.model}", description="Predictions of one cnnkit model.")

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        sub = f"{card.task} · {card.num_classes} classes · {backend} · input {card.input.height}×{card.input.width}"
        return PAGE.format(title=html.escape(card.model), subtitle=html.escape(sub))

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": card.model, "task": card.task, "classes": card.num_classes,
                "backend": backend}  # fmt: skip

    @app.post(PREDICT)
    def predict(file: UploadFile = File(...), overlay: bool = False, topk: int = 5,  # noqa: B008
                conf: float | None = Query(None, ge=0, le=1)) -> dict:  # fmt: skip
        try:
            image = decode_upload(file.file.read(), side)
            with lock:
                return predict_one(predictor, image, max(1, min(topk, 20)), overlay, conf)
        except BadImageError as e:  # undecodable, or pixels that can't be converted (NaN floats, a broken palette)
            raise HTTPException(415, f"expected an image file, found {e.reason}") from None

    app.add_middleware(Limits, max_bytes=max_bytes, max_in_flight=max_in_flight, upload_s=upload_s, stall_s=stall_s)
    return app


def warm_up(predictor: Any) -> None:
    """One prediction on a plain grey image of the model's input size, so that the first request does not pay for
    the folded inference copy and the kernels' first-call set-up (EfficientNet-Lite0: 265 ms for the first
    request, 30 ms for the next, on the 2-core AMD EPYC)."""
    c, h, w = predictor.card.input.channels, predictor.card.input.height, predictor.card.input.width
    predictor.predict([Image.new("L" if c == 1 else "RGB", (w, h), 128)])


def predict_one(predictor: Any, image: Image.Image, topk: int, overlay: bool, conf: float | None = None
                ) -> dict[str, Any]:  # fmt: skip
    """One decoded image (upright Pillow image) -> the JSON answer (:func:`answer`; an overlay when asked).
    ``conf``: the score a detector's or segmenter's object needs (None: the task's own threshold)."""
    finds_objects = hasattr(predictor, "render")
    options = {"conf": conf} if finds_objects and conf is not None else {}
    pred = predictor.predict([image], topk=topk, **options)[0]
    out = {"task": predictor.card.task} | answer(pred)
    if overlay:
        out |= _overlay(predictor, image, pred)
    return out


def answer(pred: Any) -> dict[str, Any]:
    """One prediction as JSON: a classifier's label, probability and top-k (and a localiser's box); a detector's or
    a segmenter's ``objects``, best first, each with label, class index, score and box (pixels of the upload,
    ``x1 y1 x2 y2``), and a segmenter's mask as COCO's compressed RLE (``size`` [h, w], ``counts``)."""
    if hasattr(pred, "objects"):
        objects = pred.to_dict()["objects"]
        if getattr(pred, "masks", None) is not None:
            for o, rle in zip(objects, coco_rle(pred.masks)):
                o["mask"] = rle
        return {"objects": objects}
    out = {"label": pred.label, "probability": pred.probability,
           "topk": [{"label": n, "probability": p} for n, p in pred.topk]}  # fmt: skip
    if getattr(pred, "box", None) is not None:
        out["box"] = list(pred.box)
    return out


def coco_rle(masks: Tensor) -> list[dict[str, Any]]:
    """bool masks Tensor[D, H, W] -> D COCO compressed RLEs ``{"size": [H, W], "counts": str}`` (pycocotools)."""
    import numpy as np
    from pycocotools import mask as mask_utils

    if not len(masks):
        return []
    encoded = mask_utils.encode(np.asfortranarray(masks.permute(1, 2, 0).numpy().astype(np.uint8)))
    return [{"size": [int(v) for v in e["size"]], "counts": e["counts"].decode("ascii")} for e in encoded]


def _overlay(predictor: Any, image: Image.Image, pred: Any) -> dict[str, str]:
    from ..drawing import draw_boxes

    if hasattr(predictor, "render"):  # detectors and segmenters draw their objects
        kind = "Masks" if getattr(pred, "masks", None) is not None else "Boxes"
        return {"overlay": _png_url(predictor.render(image, pred)), "overlay_kind": kind}
    if getattr(pred, "box", None) is not None:
        rgb = pil_to_tensor(image, 3, None)  # uint8 Tensor[3, H, W] at the upload's size, where the box is
        drawn = draw_boxes(rgb, torch.tensor([pred.box]), [f"{pred.label} {pred.probability:.0%}"], ["lime"])
        return {"overlay": _png_url(drawn), "overlay_kind": "Box"}
    if not isinstance(predictor.model, torch.nn.Module) or type(predictor.model).__name__ == "OrtModule":
        return {}  # Grad-CAM needs the PyTorch model's gradients
    return {"overlay": _png_url(grad_cam_overlay(predictor, image, pred.index)), "overlay_kind": "Grad-CAM"}


def grad_cam_overlay(predictor: Any, image: Image.Image | Tensor, target: int) -> Tensor:
    """The model's input view of ``image`` with the Grad-CAM map of class ``target`` blended on it:
    uint8 Tensor[3, H, W] at the model's input size."""
    from matplotlib import colormaps

    from ..explain.visualize import grad_cam

    seen = predictor.to_tensor(image)  # uint8 [C, h, w], what the model sees
    cam, _ = grad_cam(predictor.model, predictor.normalize(seen[None]).float(), target)
    heat = torch.from_numpy(colormaps["jet"](cam.numpy())[..., :3]).permute(2, 0, 1).float() * 255
    blend = 0.55 * seen.expand(3, -1, -1).float() + 0.45 * heat
    return blend.clamp(0, 255).byte()


def _png_url(image: Tensor) -> str:
    buf = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def serve(predictor: Any, host: str = "127.0.0.1", port: int = 8000, **limits: Any) -> None:
    """Run the app with uvicorn until interrupted (binds ``host``: 127.0.0.1 keeps it on this machine).

    Raises:
        CnnkitError: the address can't be bound (a port in use or out of range, an unknown host).
    """
    import uvicorn

    sock = bind(host, port)
    backend = "onnxruntime" if type(predictor.model).__name__ == "OrtModule" else "eager"
    if backend == "onnxruntime":  # torch only preprocesses here: one thread, no OpenMP wake-ups per request
        torch.set_num_threads(1)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: serving on {host}: other machines can reach this server")
    app = create_app(predictor, backend=backend, **limits)
    url = f"http://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}/"
    print(f"serving {predictor.card.model} at {url} (the page; POST {PREDICT} for JSON, {url}docs); Ctrl+C stops",
          flush=True)  # fmt: skip
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (IPv4 or IPv6, as the host resolves), for uvicorn to listen on."""
    where = f"{host}:{port}"
    if not 0 <= port <= 65535:
        raise CnnkitError(f"expected a port from 0 to 65535, found {port}; check --port")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:  # an unknown host name
        raise CnnkitError(
            f"expected a host and port to serve on, found {where}: {_why(e)}; check --host and --port"
        ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart may bind while old connections close
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise CnnkitError(
            f"expected to bind {where}, found {_why(e)}; pick another --port (or stop what is using it)"
        ) from None
    return sock


def _why(e: OSError) -> str:
    why = e.strerror or str(e)  # "Address already in use"
    return why[:1].lower() + why[1:]
