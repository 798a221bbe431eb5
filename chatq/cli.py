"""The ``chatq`` command line.

    chatq up [--port P] [--workers N] [--postprocessors M]   the whole stack, until Ctrl-C
    chatq demo                                               the pipeline end to end, then stop
    chatq model build [--from DIR] [--out DIR] [--force]     build the model the workers run
    chatq model random --out DIR [--preset tiny]             a random-weight model (tests, benches)
    chatq db upgrade                                         apply database migrations
    chatq keys create --name N [--tenant T] [--scopes S,S]    issue an API key
    chatq keys list [--tenant T] | revoke KEY | rotate KEY    list, stop, replace keys
    chatq kb ingest --tenant T PATH... | kb list --tenant T  a tenant's documents and FAQ
    chatq intents load --tenant T FILE | intents list        a tenant's intents
    chatq tenants show T | tenants configure T --file F      a tenant's routing settings
    chatq eval FILE --tenant T [--kb DIR] [--url U --key K]  score answers to a question set
    chatq moderation lists load --tenant T FILE... | eval F  a tenant's moderation lists; P/R
    chatq purge                                              apply the retention settings now
    chatq stats [--since 24h] [--tenant T] [--json]          jobs, latencies, webhooks of a window
    chatq status [--json]                                    queues, consumers, backlogs, jobs now
    chatq api | worker | postprocess | delivery              one service in the foreground

Flags become ``CHATQ_*`` variables before the settings are read, so every child process sees
the same configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError

EXIT_USAGE = 2


def _set_env(name: str, value: object) -> None:
    if value is not None:
        os.environ[f"CHATQ_{name}"] = str(value)


def cmd_up(args: argparse.Namespace) -> int:
    from chatq.stack import Stack
    from shared.config import get_settings
    from shared.logs import configure_logging

    _set_env("API_HOST", args.host)
    _set_env("API_PORT", args.port)
    _set_env("INFERENCE_WORKERS", args.workers)
    _set_env("POSTPROCESS_WORKERS", args.postprocessors)
    _set_env("API_PROCESSES", args.api_processes)
    settings = get_settings()
    configure_logging(settings, "chatq-up")
    stack = Stack(settings)
    stack.start()
    stack.wait_ready(timeout_s=120)
    print(f"chatq is up at {stack.base_url} (Ctrl-C stops it)", flush=True)
    return stack.run_until_signal()


def cmd_demo(args: argparse.Namespace) -> int:
    from chatq.demo import free_port, run_demo
    from shared.config import get_settings
    from shared.logs import configure_logging
    from shared.model_layout import ModelLayout
    from training.model_build import ModelSource, build_model

    _set_env("API_PORT", args.port or free_port())
    os.environ.setdefault("CHATQ_LOG_FORMAT", "console")
    os.environ.setdefault("CHATQ_LOG_LEVEL", "WARNING")  # the answers, not the chatter
    settings = get_settings()
    configure_logging(settings, "chatq-demo")
    if ModelLayout(settings.model_dir).read_manifest() is None:
        print(f"No model in {settings.model_dir}: building the default one first ...")
        build_model(ModelSource.default(_cache_dir(settings.model_dir)), settings.model_dir)
    return run_demo(settings)


def _quiet_model_libraries() -> None:
    """The progress bar and the summary, not the libraries' narration: ONNX Runtime's graph
    optimizer logs a line per node it removes (70 and more), transformers and optimum warn
    about what the build already handles (legacy tokenizer defaults, tied weights)."""
    import logging

    from optimum.utils import logging as optimum_logging
    from transformers.utils import logging as transformers_logging

    logging.getLogger().setLevel(logging.WARNING)
    for ours in ("training", "shared", "chatq"):
        logging.getLogger(ours).setLevel(logging.INFO)
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    # these two set their own loggers' levels when first used: through their own switches
    transformers_logging.set_verbosity_error()
    optimum_logging.set_verbosity_error()


def _cache_dir(model_dir: Path) -> Path:
    # beside the models: .chatq/models/default → .chatq/cache
    return model_dir.parent.parent / "cache"


def cmd_model_build(args: argparse.Namespace) -> int:
    from shared.config import get_settings
    from shared.logs import configure_logging
    from training.model_build import ModelSource, build_model
    from training.variants import Quantization

    settings = get_settings()
    configure_logging(settings.model_copy(update={"log_format": "console"}), "model-build")
    if not args.verbose:
        _quiet_model_libraries()
    out = Path(args.out).resolve() if args.out else settings.model_dir
    source = (
        ModelSource.from_folder(Path(args.source))
        if args.source
        else ModelSource.default(_cache_dir(settings.model_dir))
    )
    quantizations = [Quantization(q) for q in args.quantize or ()]
    if not args.no_int8 and Quantization.INT8 not in quantizations:
        # the variant CHATQ_MODEL_VARIANT=auto runs on CPUs with int8 dot products
        quantizations.insert(0, Quantization.INT8)
    manifest = build_model(
        source,
        out,
        force=args.force,
        quantizations=quantizations,
        attention_fusion=not args.no_attention_fusion,
    )
    parity = manifest.parity
    print(
        f"model {manifest.name} ({manifest.parameters / 1e6:.1f}M parameters) ready in {out}\n"
        f"  ONNX Runtime fp32 vs PyTorch: {parity.identical_sequences}/{parity.prompts} "
        f"identical greedy answers, {parity.token_agreement:.1%} of tokens agree "
        f"(graph fused: {manifest.graph_fused})"
    )
    for name, report in manifest.variants.items():
        print(
            f"  {name} vs fp32: {report.identical_sequences}/{report.prompts} identical answers, "
            f"{report.token_agreement:.1%} of tokens agree ({report.new_tokens} tokens each)"
        )
    for name, error in manifest.variant_errors.items():
        print(f"  {name}: {error}")
    return 0


def cmd_model_random(args: argparse.Namespace) -> int:
    from training.random_model import build_random_model

    out = build_random_model(Path(args.out), args.preset, seed=args.seed)
    print(f"random {args.preset} model written to {out}")
    return 0


def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    from shared.config import get_settings
    from shared.db.migrate import upgrade_database

    settings = get_settings()
    upgrade_database(settings.database_url)
    print("database is at the latest revision")
    return 0


def _database_url() -> str:
    from shared.config import get_settings
    from shared.db.migrate import upgrade_database

    settings = get_settings()
    upgrade_database(settings.database_url)
    return settings.database_url


def cmd_kb_ingest(args: argparse.Namespace) -> int:
    from chatq.knowledge_files import read_knowledge, store_knowledge

    database_url = _database_url()
    knowledge = read_knowledge([Path(p) for p in args.paths], args.lang)
    report = store_knowledge(database_url, args.tenant, knowledge)
    print(
        f"tenant {args.tenant!r}: {report.documents} document(s) in {report.chunks} chunk(s), "
        f"{report.faq} FAQ entr{'y' if report.faq == 1 else 'ies'} stored"
    )
    return 0


def cmd_kb_list(args: argparse.Namespace) -> int:
    from shared.db.engine import session_scope
    from shared.knowledge import store

    with session_scope(_database_url()) as session:
        tenant = store.tenant_by_name(session, args.tenant)
        documents = store.list_documents(session, tenant.id, limit=100_000, after=None)
        chunks = store.count_chunks(session, [d.id for d in documents])
        faq = store.list_faq(session, tenant.id, limit=100_000, after=None)
        print(f"tenant {tenant.name!r}, knowledge version {tenant.knowledge_version}")
        print(f"documents ({len(documents)}):")
        for document in documents:
            print(
                f"  {document.external_id:<32} {document.lang or '-':<3} "
                f"{chunks.get(document.id, 0):>4} chunks  {document.title}"
            )
        print(f"FAQ ({len(faq)}):")
        for entry in faq:
            print(f"  {entry.external_id:<32} {entry.lang or '-':<3} {entry.question}")
    return 0


def cmd_intents_load(args: argparse.Namespace) -> int:
    from chatq.knowledge_files import read_intents, store_intents

    database_url = _database_url()
    intents = read_intents(Path(args.file))
    variables = dict(pair.split("=", 1) for pair in args.set or ())
    count = store_intents(database_url, args.tenant, intents, variables)
    print(f"tenant {args.tenant!r}: {count} intent(s) stored")
    return 0


def cmd_intents_list(args: argparse.Namespace) -> int:
    from shared.db.engine import session_scope
    from shared.knowledge import store

    with session_scope(_database_url()) as session:
        tenant = store.tenant_by_name(session, args.tenant)
        for row in store.list_intents(session, tenant.id):
            handler = row.definition.get("handler", {}).get("type")
            examples = len(row.definition.get("examples", []))
            print(f"  {row.name:<24} {handler:<9} {examples:>3} examples")
    return 0


def cmd_tenants_show(args: argparse.Namespace) -> int:
    from shared.db.engine import session_scope
    from shared.knowledge import store

    with session_scope(_database_url()) as session:
        summary = store.tenant_summary(session, store.tenant_by_name(session, args.name))
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    return 0


def cmd_tenants_configure(args: argparse.Namespace) -> int:
    from chatq.knowledge_files import read_tenant_settings
    from shared.db.engine import session_scope
    from shared.knowledge import store

    settings = read_tenant_settings(Path(args.file))
    with session_scope(_database_url()) as session:
        tenant = store.ensure_tenant(session, args.name)
        store.put_settings(session, tenant.id, settings)
    print(f"tenant {args.name!r} configured")
    return 0


def cmd_api(_args: argparse.Namespace) -> int:
    from chatq.stack import Stack
    from shared.config import get_settings

    spec = next(s for s in Stack(get_settings()).specs() if s.name == "api")
    os.execv(spec.argv[0], spec.argv)


def cmd_worker(_args: argparse.Namespace) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # see services/worker/__main__.py
    from services.worker.main import main

    main()
    return 0


def cmd_postprocess(_args: argparse.Namespace) -> int:
    from chatq.stack import Stack
    from shared.config import get_settings

    settings = get_settings().model_copy(update={"postprocess_workers": 1})
    spec = next(s for s in Stack(settings).specs() if s.name.startswith("postprocess"))
    os.execv(spec.argv[0], spec.argv)


def cmd_delivery(_args: argparse.Namespace) -> int:
    from chatq.stack import Stack
    from shared.config import get_settings

    settings = get_settings().model_copy(update={"webhook_delivery_workers": 1})
    spec = next(s for s in Stack(settings).specs() if s.name.startswith("delivery"))
    os.execv(spec.argv[0], spec.argv)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("chatq")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatq", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"chatq {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="run the whole stack until Ctrl-C")
    up.add_argument("--host", help="address the API binds (CHATQ_API_HOST)")
    up.add_argument("--port", type=int, help="API port (CHATQ_API_PORT, default 8000)")
    up.add_argument("--workers", type=int, help="inference worker processes")
    up.add_argument("--postprocessors", type=int, help="post-processing worker processes")
    up.add_argument("--api-processes", type=int, help="gunicorn worker processes")
    up.set_defaults(handler=cmd_up)

    demo = commands.add_parser("demo", help="run the pipeline end to end on the embedded default")
    demo.add_argument("--port", type=int, help="API port (default: a free one)")
    demo.set_defaults(handler=cmd_demo)

    model = commands.add_parser("model", help="build models").add_subparsers(
        dest="model_command", required=True, metavar="ACTION"
    )
    build = model.add_parser("build", help="convert and export a model for the workers")
    build.add_argument("--from", dest="source", help="a Hugging Face causal LM folder")
    build.add_argument("--out", help="target folder (default CHATQ_MODEL_DIR)")
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")
    build.add_argument(
        "--no-attention-fusion",
        action="store_true",
        help="keep attention unfused (for an ONNX Runtime whose GroupQueryAttention cannot run "
        "the fused graph, e.g. some CUDA builds; rebuild with --force)",
    )
    build.add_argument(
        "--verbose", action="store_true", help="also show the libraries' own log lines"
    )
    build.add_argument(
        "--quantize",
        action="append",
        choices=["int8", "q4", "fp16"],
        help="also build a quantised variant (q4 for CPUs, fp16 for CUDA; int8 is built "
        "unless --no-int8); repeatable",
    )
    build.add_argument(
        "--no-int8",
        action="store_true",
        help="skip the int8 variant (what CHATQ_MODEL_VARIANT=auto runs on CPUs with int8 "
        "dot products; fp32 runs instead)",
    )
    build.set_defaults(handler=cmd_model_build)
    random = model.add_parser("random", help="write a random-weight model folder")
    random.add_argument("--out", required=True, help="target folder")
    random.add_argument("--preset", default="tiny", choices=["tiny", "qwen2-0.5b"])
    random.add_argument("--seed", type=int, default=0)
    random.set_defaults(handler=cmd_model_random)

    db = commands.add_parser("db", help="database").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    db.add_parser("upgrade", help="apply migrations").set_defaults(handler=cmd_db_upgrade)

    from chatq.keys_command import add_keys_parser

    add_keys_parser(commands)

    kb = commands.add_parser("kb", help="a tenant's knowledge base").add_subparsers(
        dest="kb_command", required=True, metavar="ACTION"
    )
    ingest = kb.add_parser(
        "ingest", help="store documents (.md .txt) and FAQ entries (.json .yaml .csv)"
    )
    ingest.add_argument("--tenant", required=True)
    ingest.add_argument("--lang", choices=["en", "zh"], help="language (default: detected)")
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    ingest.set_defaults(handler=cmd_kb_ingest)
    kb_list = kb.add_parser("list", help="list a tenant's documents and FAQ")
    kb_list.add_argument("--tenant", required=True)
    kb_list.set_defaults(handler=cmd_kb_list)

    intents = commands.add_parser("intents", help="a tenant's intents").add_subparsers(
        dest="intents_command", required=True, metavar="ACTION"
    )
    load = intents.add_parser("load", help="store the intents of a YAML file")
    load.add_argument("--tenant", required=True)
    load.add_argument(
        "--set", action="append", metavar="NAME=VALUE", help="fill {NAME} in handler URLs"
    )
    load.add_argument("file", metavar="FILE")
    load.set_defaults(handler=cmd_intents_load)
    intents_list = intents.add_parser("list", help="list a tenant's intents")
    intents_list.add_argument("--tenant", required=True)
    intents_list.set_defaults(handler=cmd_intents_list)

    tenants = commands.add_parser("tenants", help="tenants").add_subparsers(
        dest="tenants_command", required=True, metavar="ACTION"
    )
    show = tenants.add_parser("show", help="a tenant's settings and knowledge counts")
    show.add_argument("name")
    show.set_defaults(handler=cmd_tenants_show)
    configure = tenants.add_parser("configure", help="set routing settings from a YAML file")
    configure.add_argument("name")
    configure.add_argument("--file", required=True, help="tenant.yaml (fallback_answer, ...)")
    configure.set_defaults(handler=cmd_tenants_configure)

    from chatq.evaluation.command import add_eval_parser
    from chatq.feedback_command import add_feedback_parser
    from chatq.models_command import add_models_parser
    from chatq.moderation_command import add_moderation_parser
    from chatq.purge_command import add_purge_parser
    from chatq.stats_command import add_stats_parser
    from chatq.status_command import add_status_parser
    from chatq.train_command import add_train_parser

    add_eval_parser(commands)
    add_feedback_parser(commands)
    add_models_parser(commands)
    add_moderation_parser(commands)
    add_purge_parser(commands)
    add_stats_parser(commands)
    add_status_parser(commands)
    add_train_parser(commands)

    for name, handler, text in (
        ("api", cmd_api, "run the API (gunicorn) in the foreground"),
        ("worker", cmd_worker, "run one inference worker in the foreground"),
        ("postprocess", cmd_postprocess, "run one post-processing worker in the foreground"),
        ("delivery", cmd_delivery, "run one webhook delivery worker in the foreground"),
    ):
        commands.add_parser(name, help=text).set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever fetched from a model hub
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if getattr(args, "train_arguments", None) is not None:  # `chatq train` parses its own
        args.train_arguments = [*unknown, *args.train_arguments]
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ValidationError as error:
        print(f"chatq: invalid configuration:\n{error}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, RuntimeError, FileNotFoundError, LookupError) as error:
        print(f"chatq: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # the database or the broker away: one line, no traceback
        from chatq.unreachable import describe_unreachable
        from shared.config import get_settings

        line = describe_unreachable(error, get_settings())
        if line is None:
            raise
        print(f"chatq: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
