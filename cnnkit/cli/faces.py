"""``cnnkit faces detect PHOTO… [--json] [--out DIR]``: the faces in photographs (MTCNN), with their boxes
(pixels, ``x1 y1 x2 y2``), scores and 5 landmarks; with ``--out``, the photos with them drawn."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("faces", help="faces in photographs: detect (MTCNN boxes, scores, 5 landmarks)",
                       description=str(__doc__).replace("``", "`"))  # fmt: skip
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    d = actions.add_parser("detect", help="find the faces in photos", description=str(__doc__).replace("``", "`"))
    d.add_argument("photos", nargs="+", metavar="PHOTO", help="image files")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.add_argument("--out", metavar="DIR", help="write each photo with its faces drawn here (PNG)")
    d.add_argument("--min-face", type=int, default=20, help="smallest face side to look for, pixels (default 20)")
    d.set_defaults(func=run_detect)


def run_detect(args: argparse.Namespace) -> int:
    from ..verification.faces import draw_faces, faces_dict, faces_text, read_photo, save_png
    from ..verification.mtcnn import MTCNN

    detector = MTCNN.pretrained(min_face=args.min_face)
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for photo in args.photos:
        image = read_photo(photo)
        faces = detector.detect(image)
        drawn = save_png(draw_faces(image, faces), out_dir / f"{Path(photo).stem}_faces.png") if out_dir else None
        records.append({"photo": photo, "faces": faces_dict(faces), "drawn": str(drawn) if drawn else None})
        if not args.json:
            print(faces_text(photo, faces) + (f"\n  drawn: {drawn}" if drawn else ""))
    if args.json:
        print(json.dumps(records, indent=2))
    return 0
