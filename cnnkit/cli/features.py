"""``cnnkit features``: pooled features of a pretrained model, optionally with a linear SVM / logistic probe."""

from __future__ import annotations

import argparse
import json

from ..errors import CnnkitError

CLASSIFIERS = ("logistic", "svm")  # the choices of cnnkit.transfer.fit_linear


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="pooled features of a pretrained model (+ a linear SVM / logistic probe)")
    p.add_argument("--model", required=True, help="registered model name, e.g. efficientnet_lite0")
    p.add_argument("--pretrained", action="store_true", help="the model's published ImageNet weights")
    p.add_argument("--weights", metavar="PATH", help="a local state dict (.safetensors/.pt/.pth) instead")
    p.add_argument("--data", required=True, help="fashion-mnist, digits, or a folder of class sub-folders")
    p.add_argument("--data-dir", help="where named datasets are looked for")
    p.add_argument("--image-size", type=int, help="resize images to N×N (default: the model's input size)")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="where to write the features")
    p.add_argument("--classifier", choices=CLASSIFIERS, help="also train this linear classifier and report metrics")
    p.add_argument("--C", type=float, default=1.0, dest="c", help="inverse regularisation strength (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="write the classifier's metrics to FILE")
    p.set_defaults(func=run_features)


def run_features(args: argparse.Namespace) -> int:
    from ..config import DataConfig
    from ..data import load_data
    from ..io import check_output, json_safe, write_json
    from ..models import create_model, model_info
    from ..transfer import features_for, format_probe, linear_probe, save_features

    check_output(args.out, "--out")
    if not (args.pretrained or args.weights):
        raise CnnkitError("expected --pretrained or --weights PATH, found neither; random features are meaningless")
    side = args.image_size or model_info(args.model).default_input[1]
    data = load_data(DataConfig(name=args.data, data_dir=args.data_dir), seed=args.seed, image_size=(side, side))
    model = create_model(args.model, pretrained=args.pretrained, weights=args.weights, in_chans=data.in_chans)
    features = features_for(model, data)
    save_features(args.out, features, data.classes, args.model)
    n = sum(len(features[f"{s}_labels"]) for s in ("train", "val", "test"))
    print(f"{features['train_features'].shape[1]}-d features of {n} images ({side}×{side}) written to {args.out}")
    if args.classifier:
        metrics = linear_probe(features, data.classes, args.classifier, args.c, args.seed)
        print(format_probe(metrics, f"{args.classifier} on {args.model} features"))
        if args.json:
            write_json(args.json, json_safe(json.loads(json.dumps(metrics, default=float))))
    return 0
