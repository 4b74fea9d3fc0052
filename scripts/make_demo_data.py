"""Regenerate the embedded demo dataset from scikit-learn's UCI handwritten digits.

The 1,797 real 8×8 digits (values 0–16) bundled with scikit-learn are upscaled to 20×20 and centred
in a 28×28 field (MNIST-style), saved as 8-bit grayscale PNGs:

    demo/mnist/training/<digit>/img_<k>.png   (80 %)
    demo/mnist/testing/<digit>/img_<k>.png    (20 %, minus the held-out digits)
    demo/mnist_digits/digit_<i>.png           (10 held-out digits, one per class, shuffled)
    demo/mnist_digits_labels.txt              (the true class of digit_0 … digit_9)

Usage: python scripts/make_demo_data.py [OUTDIR]   (default: ./demo; needs scikit-learn, pillow)
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def to_png_array(img8: np.ndarray) -> Image.Image:
    """8×8 float image in [0, 16] → 28×28 uint8 PIL image (20×20 digit, 4-pixel margin)."""
    small = Image.fromarray((img8 * (255.0 / 16.0)).clip(0, 255).astype(np.uint8), mode="L")
    big = small.resize((20, 20), Image.BICUBIC)
    canvas = Image.new("L", (28, 28), 0)
    canvas.paste(big, (4, 4))
    return canvas


def main(out: Path) -> None:
    digits = load_digits()
    rng = np.random.default_rng(2024)
    order = rng.permutation(len(digits.target))
    n_train = int(0.8 * len(order))
    train_idx, test_idx = order[:n_train], order[n_train:]
    # hold out one test digit per class for the inference demo
    held = [next(i for i in test_idx if digits.target[i] == c) for c in range(10)]
    held = [held[c] for c in rng.permutation(10)]
    test_idx = [i for i in test_idx if i not in set(held)]
    for split, idx in (("training", train_idx), ("testing", test_idx)):
        for k, i in enumerate(idx):
            d = out / "mnist" / split / str(digits.target[i])
            d.mkdir(parents=True, exist_ok=True)
            to_png_array(digits.images[i]).save(d / f"img_{k:04d}.png", optimize=True)
    dd = out / "mnist_digits"
    dd.mkdir(parents=True, exist_ok=True)
    for j, i in enumerate(held):
        to_png_array(digits.images[i]).save(dd / f"digit_{j}.png", optimize=True)
    (out / "mnist_digits_labels.txt").write_text(" ".join(str(digits.target[i]) for i in held) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "demo"))
