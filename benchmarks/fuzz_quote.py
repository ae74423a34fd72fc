"""Fuzz `/costquote` and `budget-guard quote`: 3,000 generated quote texts, counting wrong outcomes.

    python benchmarks/fuzz_quote.py [--texts 3000] [--cli 200] [--seed 15]

Each text is built from the grammar's own pieces (models, token pairs, volumes, key=value
settings, cluster quotes) mixed with hostile ones (exponents up to e999999999, nan, inf,
negatives, huge digit strings, mentions, control characters, NUL, lone surrogates, long
words). Every text goes through the Slack answer (parse, price, Block Kit, fallback text)
and the CLI's table and JSON; `--cli N` of them also through `budget-guard quote` itself
(in process), whose exit code must be 0 or 2 with no traceback.

A wrong outcome is any exception other than a refusal with a message, an answer outside
Block Kit's limits or without fallback text, or a CLI exit code other than 0 (answered)
and 2 (bad input). Prints counts per outcome and the first few wrong texts; target 0."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.cli import main as cli_main  # noqa: E402
from bot.commands.quote import render_table  # noqa: E402
from bot.listeners.quote import answer  # noqa: E402
from jobs.config.context import Context  # noqa: E402
from jobs.config.settings import given_settings  # noqa: E402
from pricing.grammar import parse  # noqa: E402
from pricing.lexicon import QuoteSyntaxError  # noqa: E402
from pricing.quote import build_quote, quote_json  # noqa: E402

MODELS = ["llama-3.3-70b", "maestro", "deepseek-v3", "gpt-oss-120b", "qwen3-235b", "gpt-4o", "nosuchmodel",
          "meta-llama/Llama-3.3-70B-Instruct-Turbo", "openai/gpt-4o-mini", "x" * 90]
PERIODS = ["h", "hour", "day", "d", "wk", "week", "mo", "month", "monthly", "yr", "fortnight"]
HOSTILE = ["<@U0123ABC>", "<!channel>", "*bold*", "`code`", "\x00", "\udc80", "\u202e", "🙂", "\t", "\\",
           "&lt;", "'; DROP TABLE", "x" * 300, "é", "０", "١٢٣", "1/0", "/", "//", "=", "==", "k", "e", "."]


def number(rng: random.Random) -> str:
    if rng.random() < 0.6:  # most numbers are ones a person types, so most quotes get answered
        return rng.choice([str(rng.randrange(1, 8000)), f"{rng.randrange(1, 500)}{rng.choice('kKmM')}",
                           f"{rng.randrange(1, 99)}.{rng.randrange(0, 99)}"])
    kind = rng.randrange(12)
    if kind == 0:
        return f"{rng.choice(['', '-', '+'])}1e{rng.choice([rng.randrange(-40, 41), 999999999, -999999999, 10**6])}"
    if kind == 1:
        return rng.choice(["nan", "inf", "-inf", "Infinity", "NaN", "+inf"])
    if kind == 2:
        return str(rng.randrange(10)) * rng.choice([1, 19, 20, 40, 400, 1900])
    if kind == 3:
        return f"{rng.random() * 10 ** rng.randrange(-5, 8):.{rng.randrange(0, 12)}f}"
    if kind == 4:
        return f"{rng.randrange(1, 1000)}{rng.choice('kKmMbB')}"
    if kind == 5:
        return f"{rng.randrange(1, 10**6):,}"
    if kind == 6:
        return f"{rng.choice(['', '-'])}{rng.randrange(0, 10**7)}"
    if kind == 7:
        return f"{rng.randrange(1, 99)}.{rng.randrange(0, 99)}e{rng.randrange(-30, 30)}{rng.choice(['', 'k', 'm'])}"
    if kind == 8:
        return "0"
    if kind == 9:
        return f"1_000_{rng.randrange(1000):03d}"
    if kind == 10:
        return f"{rng.randrange(1, 9)}e{rng.randrange(0, 25)}"
    return str(rng.randrange(1, 5000))


def piece(rng: random.Random) -> str:
    kind = rng.randrange(14)
    if kind == 0:
        return rng.choice(MODELS)
    if kind == 1:
        return f"{number(rng)}/{number(rng)}"
    if kind == 2:
        return f"{number(rng)}/{rng.choice(PERIODS)}"
    if kind == 3:
        return f"{number(rng)} {rng.choice(['tokens', 'requests', 'tok', 'calls'])}/{rng.choice(PERIODS)}"
    if kind == 4:
        key = rng.choice(["in", "out", "cached", "requests", "tokens", "util", "gpu", "month", "volume", "bogus"])
        value = {"gpu": rng.choice(["h100", "a100", "b200", "zz"]),
                 "month": rng.choice(["feb", "2026-02", "2026-13", "smarch"]),
                 "util": f"{number(rng)}%"}.get(key) or (f"{number(rng)}/{rng.choice(PERIODS)}"
                                                          if key in {"requests", "tokens", "volume"} else number(rng))
        return f"{key}={value}"
    if kind == 5:
        return f"rate={number(rng)}/{number(rng)}"
    if kind == 6:
        return rng.choice(["x", "*", "at", "for", "with", "per", "a", "every"])
    if kind == 7:
        return rng.choice(["dedicated", "ded", "dedicated h100", "public", "--public"])
    if kind == 8:
        return rng.choice(HOSTILE)
    if kind == 9:
        return number(rng)
    if kind == 10:
        return f"{number(rng)}h"
    if kind == 11:
        return f"{number(rng)} tok/s"
    if kind == 12:
        return "".join(rng.choice("abc/=:.,-_0123456789kme ") for _ in range(rng.randrange(1, 30)))
    return rng.choice(["compare", "vs", "cluster", "help", "?"])


def text_for(rng: random.Random) -> str:
    shape = rng.randrange(6)
    if shape == 5:
        return f"{rng.choice(MODELS[:5])} {rng.randrange(1, 8)}k/{rng.randrange(1, 4)}k {piece(rng)}"
    if shape == 0:
        return f"{rng.choice(MODELS[:6])} {number(rng)}/{number(rng)} x {number(rng)}/{rng.choice(PERIODS)}"
    if shape == 1:
        return f"in={number(rng)} out={number(rng)} rate={number(rng)}/{number(rng)} requests={number(rng)}/mo"
    if shape == 2:
        return f"cluster {number(rng)} {rng.choice(['h100', 'a100', 'zz'])} {number(rng)}h {number(rng)} tok/s"
    words = [piece(rng) for _ in range(rng.randrange(1, 9))]
    if shape == 3:
        words.insert(0, rng.choice(["compare", "cluster", ""]))
    return " ".join(words)


def slack_ok(payload: dict) -> str | None:
    """Why an answer breaks Slack's rules (None: it keeps them)."""
    blocks = payload.get("blocks") or []
    if not payload.get("text"):
        return "no fallback text"
    if len(blocks) > 50:
        return f"{len(blocks)} blocks"
    for block in blocks:
        body = json.dumps(block)
        if block.get("type") == "section" and len((block.get("text") or {}).get("text", "")) > 3000:
            return "a section over 3,000 characters"
        if block.get("type") == "header" and len(block["text"]["text"]) > 150:
            return "a header over 150 characters"
        if "\\u0000" in body:
            return "a NUL in a block"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=3000)
    parser.add_argument("--cli", type=int, default=200, help="how many also run through `budget-guard quote`")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    texts = [text_for(rng) for _ in range(args.texts)]
    outcomes = {"answered": 0, "refused": 0, "wrong": 0}
    wrong: list[tuple[str, str]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        context = Context.open(given_settings(database_url=f"sqlite:///{tmp}/fuzz.db"), with_synced_prices=False)
        for text in texts:
            try:
                payload = answer(text, context)
                problem = slack_ok(payload)
                try:
                    request = parse(text)
                    if request.kind != "help":
                        result = build_quote(request, context.catalog)
                        render_table(result)
                        json.dumps(quote_json(result))
                    outcomes["answered"] += 1
                except QuoteSyntaxError as exc:
                    if not exc.message:
                        problem = problem or "a refusal without a message"
                    outcomes["refused"] += 1
                if problem:
                    raise AssertionError(problem)
            except Exception as exc:  # noqa: BLE001 - counting is the point
                outcomes["wrong"] += 1
                wrong.append((text, f"{type(exc).__name__}: {exc}"[:200]))
        context.close()
    seconds = time.perf_counter() - started
    cli_wrong = 0
    for text in texts[: args.cli]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli_main(["quote", text])
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            except Exception:  # noqa: BLE001
                code, err = -1, io.StringIO(traceback.format_exc())
        if code not in (0, 2) or "Traceback" in err.getvalue():
            cli_wrong += 1
            wrong.append((text, f"CLI exit {code}: {err.getvalue().strip()[-200:]}"))
    print(f"quote fuzz: {len(texts):,} texts in {seconds:.1f} s: {outcomes['answered']:,} answered, "
          f"{outcomes['refused']:,} refused with a message, {outcomes['wrong']} wrong")
    print(f"CLI: {min(args.cli, len(texts))} texts through `budget-guard quote`: {cli_wrong} wrong "
          "(exit code not 0 or 2, or a traceback)")
    print(f"wrong outcomes: {outcomes['wrong'] + cli_wrong} (target 0)")
    for text, why in wrong[:10]:
        print(f"  {text[:80]!r}: {why}")


if __name__ == "__main__":
    main()
