"""Write the toy task under data/toy/: reverse a sequence of letters.

Deterministic (fixed seed), so the committed files can be rebuilt byte for byte:
    python scripts/make_toy.py
"""

import random
import string
from pathlib import Path

SYMBOLS = string.ascii_lowercase[:20]
SIZES = {"train": 6000, "valid": 200, "test": 200}


OUT = Path(__file__).resolve().parent.parent / "data" / "toy"


def main(out: Path = OUT) -> None:
    rng = random.Random(20261125)
    out.mkdir(parents=True, exist_ok=True)
    for split, size in SIZES.items():
        sources = [[rng.choice(SYMBOLS) for _ in range(rng.randint(3, 12))] for _ in range(size)]
        (out / f"{split}.src").write_text("".join(" ".join(s) + "\n" for s in sources))
        (out / f"{split}.tgt").write_text("".join(" ".join(reversed(s)) + "\n" for s in sources))


if __name__ == "__main__":
    main()
