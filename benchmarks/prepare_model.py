"""First-run and cached time of ``prepare_model`` for an embedded model, side by side in one run.

    .venv/bin/python benchmarks/prepare_model.py [--model gemma-3-270m]

In a fresh temporary ``LOCEDIT_CACHE``: (1) the conversion as transformers does it alone (the GGUF
parsed three times: config, tokenizer, weights), (2) the conversion with one parse
(``locedit.models._gguf_read_once``), (3) ``prepare_model`` into a new folder once the user cache
holds the converted model (what a second clone or a CI run pays). Checks that (1) and (2) wrote
identical weights.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from safetensors.torch import load_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LOCEDIT_CACHE"] = tmp
        from locedit.models import EMBEDDED_MODELS, _write_hf_folder, converted_folder, prepare_model, user_cache

        embedded = EMBEDDED_MODELS[args.model]
        start = time.perf_counter()
        gguf = embedded.gguf(user_cache())
        assemble_s = time.perf_counter() - start
        times, folders = {}, {"three parses": Path(tmp) / "three_parses", "one parse": converted_folder(embedded)}
        for name, read_once in (("three parses", False), ("one parse", True)):
            start = time.perf_counter()
            _write_hf_folder(gguf, folders[name], read_once=read_once)
            times[name] = time.perf_counter() - start
        a, b = (load_file(folder / "model.safetensors") for folder in folders.values())
        same = a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
        start = time.perf_counter()
        prepare_model(args.model, Path(tmp) / "second")
        times["cached"] = time.perf_counter() - start
    print(f"{args.model}: GGUF assembled in {assemble_s:.1f} s; conversion with three parses "
          f"{times['three parses']:.1f} s, with one parse {times['one parse']:.1f} s "
          f"({times['three parses'] / times['one parse']:.2f}x), identical weights: {same}; "
          f"from the user cache {times['cached']:.2f} s")


if __name__ == "__main__":
    main()
