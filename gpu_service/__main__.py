"""`python -m gpu_service tiny-model DIR` writes a tiny random-weight Stable Diffusion pipeline to DIR;
`python -m gpu_service tiny-quality-models DIR` writes tiny random-weight CLIP and DINO models to DIR/clip and
DIR/dino (for QUALITY_CLIP_MODEL and QUALITY_DINO_MODEL);
`python -m gpu_service demo-images DIR` writes synthetic training photos for the demo."""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu_service")
    commands = parser.add_subparsers(dest="command", required=True)
    tiny = commands.add_parser("tiny-model", help="write a tiny random-weight SD pipeline (no network)")
    tiny.add_argument("directory", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument(
        "--safety-checker", choices=("none", "flag-all", "flag-none"), default="none",
        help="include a tiny safety checker that flags every image, or none",
    )
    quality = commands.add_parser(
        "tiny-quality-models", help="write tiny random-weight CLIP and DINO models to DIR/clip and DIR/dino"
    )
    quality.add_argument("directory", type=Path)
    quality.add_argument("--seed", type=int, default=0)
    demo = commands.add_parser("demo-images", help="write a few synthetic training photos for the demo")
    demo.add_argument("directory", type=Path)
    demo.add_argument("--count", type=int, default=4)
    args = parser.parse_args(argv)

    if args.command == "demo-images":
        from gpu_service.demo_images import write_demo_images

        for path in write_demo_images(args.directory, args.count):
            print(path)
        return 0
    if args.command == "tiny-quality-models":
        from gpu_service.engine.tiny_quality import write_tiny_quality_models

        clip, dino = write_tiny_quality_models(args.directory, seed=args.seed)
        print(f"QUALITY_CLIP_MODEL={clip}\nQUALITY_DINO_MODEL={dino}")
        return 0
    from gpu_service.engine.tiny_model import write_tiny_model

    write_tiny_model(args.directory, seed=args.seed, safety_checker=args.safety_checker)
    print(f"tiny model written to {args.directory}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
