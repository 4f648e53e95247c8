"""Build verl parquet files from a local GSM8K-style JSONL file (no download).

Each input line is ``{"question": ..., "answer": ...}``; the answer's final
number follows ``####`` as in GSM8K (a bare number is accepted too). The output
rows have the columns verl's ``RLHFDataset`` and its ``gsm8k`` reward expect:
``data_source``, ``prompt`` (chat messages), ``ability``, ``reward_model``
(``ground_truth``) and ``extra_info`` (``split``, ``index``; ``index`` is the
stable prompt id knapsack-rl tracks), plus a ``prompt_id`` column.

    python examples/verl/prepare_gsm8k.py --train train.jsonl --test test.jsonl --out ~/data/gsm8k
"""

from __future__ import annotations

import argparse
import json
import os
import re

INSTRUCTION = 'Let\'s think step by step and output the final answer after "####".'


def final_answer(answer: str) -> str:
    """The number after ``####`` (commas removed), or the whole answer if there is none."""
    m = re.search(r"####\s*(-?[0-9.,]+)", answer)
    return (m.group(1) if m else answer).replace(",", "").strip()


def make_rows(records: list[dict], split: str) -> list[dict]:
    rows = []
    for i, rec in enumerate(records):
        rows.append(
            {
                "data_source": "openai/gsm8k",
                "prompt": [{"role": "user", "content": f"{rec['question']} {INSTRUCTION}"}],
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": final_answer(str(rec["answer"]))},
                "extra_info": {"split": split, "index": i, "question": rec["question"]},
                "prompt_id": f"{split}-{i}",
            }
        )
    return rows


def read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_parquet(rows: list[dict], path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path + ".tmp"
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", required=True, help="JSONL with question/answer per line")
    ap.add_argument("--test", required=True, help="JSONL with question/answer per line")
    ap.add_argument("--out", required=True, help="output folder (train.parquet, test.parquet)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    for split, src in (("train", args.train), ("test", args.test)):
        rows = make_rows(read_jsonl(src), split)
        write_parquet(rows, os.path.join(args.out, f"{split}.parquet"))
        print(f"{split}: {len(rows)} rows -> {os.path.join(args.out, split + '.parquet')}")


if __name__ == "__main__":
    main()
