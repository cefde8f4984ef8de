"""`vitrine`: run the whole system on one machine (`vitrine run`), list every setting.

`vitrine run` starts the embedder, the tagger and the search service (with its embedded Qdrant
engine) as child processes, then the explorer (the web page), waits until each reports SERVING,
loads the demo collection through the search service's UpsertObjects RPC (objects already
stored unchanged are skipped, so a second start is fast), prints the explorer's address and
ready-to-paste grpcurl commands and runs until Ctrl-C, which drains and stops them all.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from vitrine.launcher import ServiceProcess, start_service
from vitrine.tagger.model_store import newest_version

SHARED_TATE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tate"
SHARED_DATA = SHARED_TATE.parent
PORTS = {"embedder": (50051, 9101), "tagger": (50052, 9102), "search": (50053, 9103), "explorer": (8080, 9104)}


def _grpcurl() -> str:
    local = Path(sys.executable).parent / "grpcurl"
    return str(local) if local.exists() else (shutil.which("grpcurl") or "grpcurl")


def examples(addresses: dict[str, str], demo_id: str = "D00889") -> str:
    g = _grpcurl()
    e, t, s = addresses["embedder"], addresses["tagger"], addresses["search"]
    metrics_ports = "  ".join(f":{PORTS[name][1]}" for name in ("tagger", "search", "explorer"))
    return f"""
Vitrine is running.

  Explorer (search, like, tag suggestions in a browser): http://{addresses["explorer"]}/

Try (paste into another terminal):

  # what each server offers (server reflection)
  {g} -plaintext {s} list
  {g} -plaintext {s} describe vitrine.v1.SearchService
  # health
  {g} -plaintext {e} grpc.health.v1.Health/Check
  # embedder: models, and a text vector
  {g} -plaintext {e} vitrine.v1.EmbedderService/ListModels
  {g} -plaintext -d '{{"model": "mpnet", "texts": ["a ship in a storm"]}}' {e} vitrine.v1.EmbedderService/EmbedTexts
  # search: free text, one object, more like it
  {g} -plaintext -d '{{"query": "ship in a storm at sea"}}' {s} vitrine.v1.SearchService/Search
  {g} -plaintext -d '{{"id": "{demo_id}"}}' {s} vitrine.v1.SearchService/GetObject
  {g} -plaintext -d '{{"id": "{demo_id}"}}' {s} vitrine.v1.SearchService/MoreLikeThis
  {g} -plaintext {s} vitrine.v1.SearchService/GetCollectionInfo
  # tagger
  {g} -plaintext {t} vitrine.v1.TaggerService/GetTaggerInfo

Metrics: http://127.0.0.1:{PORTS["embedder"][1]}/metrics  {metrics_ports}
Press Ctrl-C to stop.
"""


def ensure_tagger_model(model_dir: Path, embedder: str, args: argparse.Namespace, env: dict[str, str]) -> bool:
    """Train a demo tagger version on first start (none in `model_dir`), through the running
    embedder; later starts reuse it. The whole training split takes about half an hour on two
    CPU cores, so the demo version learns from a seeded sample unless --tagger-train-all."""
    if newest_version(model_dir) is not None:
        return True
    data = SHARED_TATE / "tate_train.jsonl.gz"
    size = "all" if args.tagger_train_all else str(args.tagger_train_limit)
    if args.tagger_train_all:
        print("training the demo tagger on the whole training split (about 30 minutes on 2 CPU cores) ...")
    else:
        print(
            f"training the demo tagger on a sample of {size} of the 55k training objects: MPNet embeds the "
            f"16k tag names and {size} objects once (about 8 minutes on 2 CPU cores, cached afterwards); "
            "`--tagger-train-all` uses all of them, `vitrine-tagger train` your own data ...",
            flush=True,
        )
    command = [sys.executable, "-m", "vitrine.tagger.cli", "train", "--data", str(data), "--embedder", embedder]
    # Written atomically: a start interrupted during training leaves no half version behind.
    command += ["--out-dir", str(model_dir), "--version", f"demo-{size}"]
    command += ["--eval-data", str(SHARED_TATE / "tate_dev.jsonl.gz"), "--eval-limit", "1000"]
    if not args.tagger_train_all:
        command += ["--limit", size]
    return subprocess.run(command, env=env).returncode == 0


def set_aside_outdated_store(data_dir: Path, collection: str, expected: dict[str, int] | None = None) -> Path | None:
    """A demo store made by an older Vitrine (without sparse vectors this version needs, or with
    vectors of other dimensions than the `expected` ones the models give now) is moved to
    `<data_dir>.outdated-<time>` so that the demo collection is ingested afresh; returns where it
    went, or None when the store is current (or absent)."""
    from vitrine.search.store import EmbeddedStore, OutdatedCollection

    try:
        stored = EmbeddedStore(data_dir, collection).stored_dimensions()
        if stored is None or expected is None or stored == expected:
            return None
    except OutdatedCollection:
        pass
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = data_dir.with_name(f"{data_dir.name}.outdated-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = data_dir.with_name(f"{data_dir.name}.outdated-{stamp}-{n}")
    data_dir.rename(aside)
    return aside


def search_dimensions(embedder: str, env: dict[str, str]) -> dict[str, int]:
    """The vector dimensions the search service will store, from the running embedder's models
    and the search settings in `env`."""
    import grpc

    from vitrine.common.settings import load_settings
    from vitrine.search.server import choose_image_model
    from vitrine.search.settings import ENV_PREFIX, SearchSettings
    from vitrine.v1 import embedder_pb2, embedder_pb2_grpc

    settings = load_settings(SearchSettings, ENV_PREFIX, [], environ=env)
    with grpc.insecure_channel(embedder) as channel:
        models = embedder_pb2_grpc.EmbedderServiceStub(channel).ListModels(embedder_pb2.ListModelsRequest(), timeout=30)
    by_name = {m.name: m.dimension for m in models.models}
    dims = {"text": by_name.get(settings.text_model, 0)}
    image = choose_image_model(models, settings.image_model)
    if image:
        dims["image"] = by_name[image]
    return dims


def run(args: argparse.Namespace) -> int:
    var = Path(args.data_dir).resolve()
    log_dir = var / "logs"
    env = {
        **os.environ,
        "VITRINE_SEARCH_DATA_DIR": str(var / "search"),
        "VITRINE_TAGGER_MODEL_DIR": str(var / "tagger" / "models"),
    }
    services: list[ServiceProcess] = []
    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop_all)
    try:
        print(f"starting embedder, tagger, search (logs in {log_dir}) ...", flush=True)
        embedder_port, embedder_metrics = PORTS["embedder"]
        services.append(start_service("embedder", log_dir, env, port=embedder_port, metrics_port=embedder_metrics))
        services[0].wait_serving(args.ready_timeout)
        print(f"  {'embedder':8s} SERVING on {services[0].address}", flush=True)
        if not args.no_demo:
            collection = env.get("VITRINE_SEARCH_COLLECTION", "vitrine")
            expected = search_dimensions(services[0].address, env)
            aside = set_aside_outdated_store(var / "search", collection, expected)
            if aside is not None:
                print(f"the search store was made by an older Vitrine: moved to {aside}; the demo is ingested afresh")
        model_dir = var / "tagger" / "models"
        if args.no_demo:
            tagger_ready = newest_version(model_dir) is not None
        else:
            tagger_ready = ensure_tagger_model(model_dir, services[0].address, args, env)
        if tagger_ready:
            # Search indexes the tagger's machine tags of every object it ingests.
            env["VITRINE_SEARCH_TAGGER_ADDRESS"] = f"127.0.0.1:{PORTS['tagger'][0]}"
        elif not args.no_demo:
            print(
                "training the demo tagger failed; the tagger starts without a model and search without machine tags",
                file=sys.stderr,
            )
        for name in ("tagger", "search"):
            port, metrics_port = PORTS[name]
            services.append(start_service(name, log_dir, env, port=port, metrics_port=metrics_port))
        for service in services[1:]:
            service.wait_serving(args.ready_timeout)
            print(f"  {service.name:8s} SERVING on {service.address}", flush=True)
        env["VITRINE_EXPLORER_SEARCH_ADDRESS"] = services[-1].address
        env["VITRINE_EXPLORER_TAGGER_ADDRESS"] = services[1].address if tagger_ready else ""
        # The demo's image files, which the explorer serves to the page.
        env.setdefault(
            "VITRINE_EXPLORER_IMAGE_ROOTS", ",".join(str(SHARED_DATA / d) for d in ("paintings", "aic-fullsize"))
        )
        port, metrics_port = PORTS["explorer"]
        services.append(start_service("explorer", log_dir, env, port=port, metrics_port=metrics_port))
        services[-1].wait_serving(args.ready_timeout)
        print(f"  {'explorer':8s} SERVING on {services[-1].url}", flush=True)
        addresses = {s.name: s.address for s in services}
        if not args.no_demo:
            load = [sys.executable, "-m", "vitrine.search.cli", "--address", addresses["search"], "load-demo"]
            if args.all:
                load.append("--all")
            if subprocess.run(load, env=env).returncode != 0:
                print("loading the demo collection failed; the services keep running", file=sys.stderr)
        print(examples(addresses), flush=True)
        # From here Ctrl-C just ends the loop below; before, it interrupts start-up or loading.
        signal.signal(signal.SIGINT, stop_all)
        while not stopping:
            for service in services:
                if service.process.poll() is not None:
                    print(
                        f"{service.name} stopped unexpectedly; last log lines:\n{service.log_tail()}", file=sys.stderr
                    )
                    return 1
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        print("\nstopping (draining in-flight calls) ...", flush=True)
        for service in services:
            service.terminate()
        for service in services:
            service.stop()
        print("stopped.", flush=True)


def print_settings(_: argparse.Namespace) -> int:
    from vitrine.common.settings import describe
    from vitrine.embedder.settings import ENV_PREFIX as EMBEDDER
    from vitrine.embedder.settings import EmbedderSettings
    from vitrine.explorer.settings import ENV_PREFIX as EXPLORER
    from vitrine.explorer.settings import ExplorerSettings
    from vitrine.search.settings import ENV_PREFIX as SEARCH
    from vitrine.search.settings import SearchSettings
    from vitrine.tagger.settings import ENV_PREFIX as TAGGER
    from vitrine.tagger.settings import TaggerSettings

    for title, cls, prefix in (
        ("embedder", EmbedderSettings, EMBEDDER),
        ("tagger", TaggerSettings, TAGGER),
        ("search", SearchSettings, SEARCH),
        ("explorer", ExplorerSettings, EXPLORER),
    ):
        print(f"\n### {title}\n\n| variable | default | meaning |\n| --- | --- | --- |")
        for env_var, default, help_text in describe(cls, prefix):
            print(f"| `{env_var}` | `{default}` | {help_text} |")
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vitrine", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="start the services and the explorer with the demo collection")
    run_parser.add_argument("--all", action="store_true", help="load the whole demo collection, not the default subset")
    run_parser.add_argument("--no-demo", action="store_true", help="start the services without loading the demo")
    run_parser.add_argument(
        "--tagger-train-limit", type=int, default=4000, help="training objects of the demo tagger (first start)"
    )
    run_parser.add_argument("--tagger-train-all", action="store_true", help="train the demo tagger on all 55k objects")
    run_parser.add_argument("--data-dir", default="var", help="where the store, trained models and logs live")
    run_parser.add_argument("--ready-timeout", type=float, default=600, help="seconds each service may take to start")
    run_parser.set_defaults(func=run)
    settings_parser = commands.add_parser("settings", help="print every setting of every service as markdown")
    settings_parser.set_defaults(func=print_settings)
    args = parser.parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
