"""``cnnkit verify RUN A B`` (same or different), ``cnnkit verify enroll RUN --gallery DIR`` (store embeddings
per identity), ``cnnkit verify identify RUN IMAGE…`` (the nearest enrolled identities, or "unknown") and
``cnnkit verify pairs RUN --pairs pairs.txt --root DIR`` (LFW's standard evaluation: 10-fold accuracy, each fold
at the threshold chosen on the other 9, its mean ± std; ROC AUC, EER and TAR@FAR over all pairs).

RUN may also be the ``.onnx`` file ``cnnkit export`` wrote of a verify run (its threshold travels in the file; its
gallery is kept beside it, ``NAME.gallery.safetensors``); ``pairs`` takes a run.

With ``--faces`` every image is a photograph: its most confident face is found (MTCNN), aligned on its 5 landmarks
and cropped, and the crop is embedded."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import CnnkitError

USAGE = ("cnnkit verify RUN A B | cnnkit verify enroll RUN --gallery DIR | cnnkit verify identify RUN IMAGE…"
         " | cnnkit verify pairs RUN --pairs pairs.txt --root DIR")  # fmt: skip


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", usage=USAGE, description=str(__doc__).replace("``", "`"),
                       help="face verification with a verify run: compare, enrol, identify, LFW pairs")  # fmt: skip
    p.add_argument("words", nargs="+", metavar="ARG",
                   help="RUN A B, or enroll RUN, or identify RUN IMAGE…, or pairs RUN")  # fmt: skip
    p.add_argument("--gallery", metavar="DIR", help="enroll: a folder per identity (one image each: one-shot)")
    p.add_argument("--top", type=int, default=3, help="identify: how many identities to list (default 3)")
    p.add_argument(
        "--pairs",
        metavar="FILE",
        help="pairs: LFW's pairs.txt (first line FOLDS PAIRS, then the pairs), or its pairs.csv copy",
    )
    p.add_argument(
        "--root",
        metavar="DIR",
        help="pairs: the images, DIR/name/name_0001.jpg (LFW's layout; .png or .jpeg also found)",
    )
    p.add_argument("--skip-bad", action="store_true", help="pairs: leave out (and count) pairs naming a missing image")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--faces", action="store_true",
                   help="photographs: detect the face (MTCNN), align it on 5 landmarks, embed the crop")  # fmt: skip
    p.add_argument("--min-face", type=int, default=20, help="--faces: smallest face side, pixels (default 20)")
    p.set_defaults(func=run_verify)


def _embed(pred: Any, paths: list, args: argparse.Namespace) -> Any:
    """Embeddings Tensor[N, dim] of the images (with --faces, of each photo's aligned face crop), in batches."""
    from ..tasks.verify import embed_images

    return embed_images(pred, list(paths), args.faces, args.min_face)


def run_verify(args: argparse.Namespace) -> int:
    words = args.words
    if words[0] == "enroll":
        return _enroll(words[1:], args)
    if words[0] == "identify":
        return _identify(words[1:], args)
    if words[0] == "pairs":
        return _pairs(words[1:], args)
    if len(words) != 3:
        raise CnnkitError(f"expected RUN A B (a run and two images), found {len(words)} argument(s); usage: {USAGE}")
    pred = _embedder(words[0])
    emb, threshold = _embed(pred, words[1:], args), pred.threshold()
    dist = float((emb[0] - emb[1]).square().sum())
    same = dist <= threshold
    if args.json:
        print(json.dumps({"a": words[1], "b": words[2], "same": same, "distance": dist, "threshold": threshold}))
    else:
        print(
            f"{'same' if same else 'different'}: distance {dist:.4f} {'≤' if same else '>'} threshold {threshold:.4f}"
        )
    return 0


def _embedder(source: str) -> Any:
    """A verify run's embedder, or an exported verify model's (an ``.onnx`` file: its threshold is in it)."""
    from ..tasks.verify import EmbeddingPredictor

    if not source.endswith(".onnx"):
        return EmbeddingPredictor.from_run(source)
    from ..deploy import load_onnx

    pred = load_onnx(source)
    if not isinstance(pred, EmbeddingPredictor):
        raise CnnkitError(f"expected a verify model in {source!r}, found a {pred.card.task} model")
    return pred


def _enroll(words: list[str], args: argparse.Namespace) -> int:
    if len(words) != 1 or not args.gallery:
        raise CnnkitError(f"expected `cnnkit verify enroll RUN --gallery DIR`, found {' '.join(words) or 'no run'}")
    from ..verification.gallery import Gallery, gallery_files

    pred = _embedder(words[0])
    files = gallery_files(args.gallery)
    names = [name for name, paths in files.items() for _ in paths]
    gallery = Gallery(_embed(pred, [p for paths in files.values() for p in paths], args), names)
    path = gallery.save(words[0])
    print(f"enrolled {len(files)} identities ({len(names)} images) into {path}")
    return 0


def _identify(words: list[str], args: argparse.Namespace) -> int:
    if len(words) < 2:
        raise CnnkitError(f"expected `cnnkit verify identify RUN IMAGE…`, found {' '.join(words) or 'nothing'}")
    from ..verification.gallery import Gallery

    pred = _embedder(words[0])
    gallery, threshold = Gallery.load(words[0]), pred.threshold()
    found = gallery.identify(_embed(pred, words[1:], args), threshold, args.top)
    if args.json:
        print(json.dumps([{"image": im, "matches": [{"identity": n, "distance": d} for n, d in hits]}
                          for im, hits in zip(words[1:], found)], indent=2))  # fmt: skip
        return 0
    for im, hits in zip(words[1:], found):
        text = ", ".join(f"{n} ({d:.4f})" for n, d in hits) if hits else f"unknown (none within {threshold:.4f})"
        print(f"{im}: {text}")
    return 0


def _pairs(words: list[str], args: argparse.Namespace) -> int:
    if len(words) != 1 or not args.pairs or not args.root:
        raise CnnkitError("expected `cnnkit verify pairs RUN --pairs pairs.txt --root DIR`, found"
                          f" {' '.join(words) or 'no run'}{'' if args.pairs else ' without --pairs'}"
                          f"{'' if args.root else ' without --root'}")  # fmt: skip
    from ..tasks.verify import evaluate_pairs
    from ..verification.lfw import lfw_text

    m = evaluate_pairs(words[0], args.pairs, args.root, skip_bad=args.skip_bad, faces=args.faces,
                       min_face=args.min_face)  # fmt: skip
    print(json.dumps(m, indent=2) if args.json else lfw_text(m))
    return 0
