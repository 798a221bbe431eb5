"""Moderation speed: building the base moderator, and ``check`` on 500-character texts.

Rows: English and Chinese, clean and with hits, on the lexicon alone and with the English
classifier (the base moderator); p50/p95 over many calls. Also the package's own
``profanity_check.predict_prob`` on the same English text, the figure our pure-Python
re-implementation of its score replaces.

    .venv/bin/python bench/moderation.py [--repeat 2000]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from results_file import write_results

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.moderation import Moderator  # noqa: E402
from shared.moderation.terms import base_lists  # noqa: E402

EN_CLEAN = (
    "Hi, I ordered the stainless kettle last Tuesday and the tracking page has not moved since "
    "Thursday. Could you check whether the parcel left the warehouse, and if it is lost, send a "
    "replacement or refund me? I also applied the SAVE10 code but the discount did not show up "
    "on the receipt. The class of delivery I paid for was express, so I would like the extra "
    "shipping fee back as well. Please assess the situation and email me. Thanks a lot, "
)
EN_HITS = (
    "What the fuck is wrong with your warehouse? I ordered the kettle last Tuesday and this "
    "bullshit tracking page has not moved since Thursday. You are an idiot if you think a "
    "voucher fixes it. f.u.c.k this, send a replacement or refund me today. The damn code "
    "SAVE10 also failed. I want the express fee back, your agents are useless morons and I "
    "have been on hold for an hour. Sort it out now or I'll leave a review everywhere, ok "
)
ZH_CLEAN = (
    "你好，我上周二买的不锈钢电水壶到现在物流还没有更新，麻烦帮我查一下包裹是否已经出库。"
    "如果丢件了，请给我补发或者退款。另外我用了优惠券但是订单上没有显示折扣，我付的是加急运费，"
    "希望能把多收的运费退给我。操作系统升级以后你们的应用也经常闪退，麻烦转告技术同事处理。"
)
ZH_HITS = (
    "你们这群废物，上周二买的电水壶到现在物流都没更新，他妈的到底什么时候发货？傻 逼 客服"
    "只会复制粘贴，优惠券也用不了，卧槽价格还翻倍了。再不退款我就去投诉，你们老板就是个人渣。"
    "加急运费必须退给我，别再用机器人敷衍我了，听到没有。"
)


def _to_500(text: str) -> str:
    return (text * (500 // len(text) + 1))[:500]


def _timed(function: Any, repeat: int) -> dict[str, float]:
    for _ in range(min(50, repeat)):
        function()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 4),
        "p95_ms": round(times[int(len(times) * 0.95)], 4),
    }


def _build_in_fresh_process() -> float:
    """Seconds to import and build the base moderator in a new interpreter (what a worker pays
    once at start)."""
    code = (
        "import time; t = time.perf_counter(); "
        "from shared.moderation import Moderator; Moderator.base(); "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "moderation.json")
    args = parser.parse_args()

    build_s = [_build_in_fresh_process() for _ in range(3)]
    base = Moderator.base()
    lexicon_only = Moderator.from_lists(base_lists())
    texts = {
        "en clean": (_to_500(EN_CLEAN), "en"),
        "en hits": (_to_500(EN_HITS), "en"),
        "zh clean": (_to_500(ZH_CLEAN), "zh"),
        "zh hits": (_to_500(ZH_HITS), "zh"),
    }
    rows: dict[str, Any] = {}
    for name, (text, lang) in texts.items():
        for label, moderator, given in (
            ("lexicon", lexicon_only, lang),
            ("lexicon+classifier", base, lang),
            ("base, lang=None", base, None),
        ):
            if label == "lexicon+classifier" and lang != "en":
                continue  # the classifier runs only over English
            result = moderator.check(text, stage="output", lang=given)
            timing = _timed(
                lambda m=moderator, t=text, g=given: m.check(t, stage="output", lang=g), args.repeat
            )
            rows[f"{name} / {label}"] = {
                **timing,
                "chars": len(text),
                "categories": list(result.categories),
            }
    try:
        from profanity_check import predict_prob

        english = texts["en clean"][0]
        rows["en clean / profanity_check.predict_prob"] = {
            **_timed(lambda: predict_prob([english]), max(50, args.repeat // 20)),
            "chars": len(english),
            "categories": [],
        }
    except ImportError:
        pass

    print(f"build (fresh process, import + build): {', '.join(f'{s:.2f}' for s in build_s)} s")
    print(f"terms in the base automaton: {base.term_count}\n")
    print(f"{'text / path':<48} {'p50 ms':>8} {'p95 ms':>8}  categories")
    for name, row in rows.items():
        print(
            f"{name:<48} {row['p50_ms']:>8.3f} {row['p95_ms']:>8.3f}  {','.join(row['categories'])}"
        )
    write_results(
        args.out,
        "moderation",
        build_s=[round(s, 3) for s in build_s],
        base_terms=base.term_count,
        repeat=args.repeat,
        rows=rows,
    )


if __name__ == "__main__":
    main()
