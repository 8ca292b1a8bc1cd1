"""DDP scaling on the CPU: char-LM training tokens/s for 1 rank x 1 thread and 2 ranks x 1 thread.

    python benchmarks/ddp_scaling.py                 # cpu preset, Tiny Shakespeare, 2 repeats
    python benchmarks/ddp_scaling.py --steps 30 --repeats 3 --mode strong

Both runs go through the real path (``chatrnn.train`` task, DDP over gloo, the shared trainer with
its stop agreement), one process per rank with one thread each (``OMP_NUM_THREADS=1``), started by
``torchrun --standalone``. Throughput is timed over ``--steps`` optimizer steps after ``--warmup``
steps; evaluation and the checkpoint come after the timed window.

``--mode weak`` (default) keeps the batch per rank, so 2 ranks train twice the rows per step (how
DDP is used to go faster); ``--mode strong`` keeps the global batch and splits it. The 1-rank and
2-rank runs are interleaved ``--repeats`` times and the best of each is compared, which is the
fairest figure on a machine shared with other work (the medians are printed too).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def worker(a: dict) -> None:
    import torch

    from chatrnn.train import distributed
    from chatrnn.train.charlm import CharLMOptions, build_charlm
    from chatrnn.train.trainer import Trainer

    torch.set_num_threads(1)
    dist = distributed.from_env("cpu")
    world = dist.world if dist else 1
    batch = a["batch"] * world if a["mode"] == "weak" else a["batch"]
    total = a["warmup"] + a["steps"]
    opts = CharLMOptions(
        out=Path(a["out"]),
        corpus=[a["corpus"]],
        preset=a["preset"],
        batch_size=batch,
        seq_len=a["seq_len"],
        val_fraction=0.02,
        device="cpu",
        train=dict(max_steps=total, evals=1, seed=1),
    )
    task, train = build_charlm(opts, torch.device("cpu"), dist)
    marks: dict[int, tuple[float, float]] = {}

    def stop_check(step: int) -> bool:
        if step in (a["warmup"], total) and step not in marks:
            marks[step] = (time.perf_counter(), time.process_time())
        return False

    Trainer(
        task,
        train,
        opts.out,
        torch.device("cpu"),
        dist=dist,
        stop_check=stop_check,
        train_model=dist.wrap(task.model) if dist else None,
    ).run()
    if dist is None or dist.is_main:
        secs = marks[total][0] - marks[a["warmup"]][0]
        cpu = marks[total][1] - marks[a["warmup"]][1]  # this rank's CPU time, gloo's threads included
        tokens = a["steps"] * task.tokens_per_step * world
        Path(a["result"]).write_text(
            json.dumps(
                {
                    "world": world,
                    "tokens_per_s": tokens / secs,
                    "s_per_step": secs / a["steps"],
                    "global_batch": batch,
                    "cpu_per_step": cpu / a["steps"],
                    "params": task.model.num_parameters(),
                    "syncs": dist.syncs if dist else 0,
                }
            )
        )
    if dist:
        dist.close()


def run(nproc: int, a: dict, tmp: Path, tag: str) -> dict:
    args = dict(a, out=str(tmp / f"ck-{tag}"), result=str(tmp / f"{tag}.json"))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    me = str(Path(__file__).resolve())
    if nproc == 1:
        cmd = [sys.executable, me, "--worker", json.dumps(args)]
    else:
        torchrun = str(Path(sys.executable).parent / "torchrun")
        cmd = [torchrun, "--standalone", f"--nproc_per_node={nproc}", me, "--worker", json.dumps(args)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{tag} failed:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return json.loads(Path(args["result"]).read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--batch", type=int, default=32, help="rows per rank (weak) or in all (strong)")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--mode", choices=["weak", "strong"], default="weak")
    ap.add_argument("--corpus", default=None, help="text file (default: the shared Tiny Shakespeare)")
    a = ap.parse_args()
    if a.worker:
        worker(json.loads(a.worker))
        return
    from _common import corpus, temp_home

    tmp = temp_home()
    path = a.corpus or str(corpus("tinyshakespeare.txt"))
    args = dict(
        preset=a.preset, batch=a.batch, seq_len=a.seq_len, steps=a.steps, warmup=a.warmup, mode=a.mode, corpus=path
    )
    print(
        f"char LM, preset {a.preset}, {a.mode} scaling, batch "
        f"{a.batch} {'per rank' if a.mode == 'weak' else 'in all'}, "
        f"seq {a.seq_len}, {a.steps} timed steps after {a.warmup}; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    one, two, cpu1, cpu2 = [], [], [], []
    for i in range(a.repeats):
        r1 = run(1, args, tmp, f"one{i}")
        one.append(r1["tokens_per_s"])
        cpu1.append(r1["cpu_per_step"])
        print(
            f"  1 rank  x 1 thread: {r1['tokens_per_s']:>9,.0f} chars/s  ({r1['s_per_step'] * 1000:.0f} ms/step, "
            f"global batch {r1['global_batch']})",
            flush=True,
        )
        r2 = run(2, args, tmp, f"two{i}")
        two.append(r2["tokens_per_s"])
        cpu2.append(r2["cpu_per_step"])
        print(
            f"  2 ranks x 1 thread: {r2['tokens_per_s']:>9,.0f} chars/s  ({r2['s_per_step'] * 1000:.0f} ms/step, "
            f"global batch {r2['global_batch']}, {r2['syncs']} stop agreements)",
            flush=True,
        )
    print(f"parameters {r1['params']:,}")
    print(
        f"median: 1 rank {statistics.median(one):,.0f}, 2 ranks {statistics.median(two):,.0f} chars/s, "
        f"ratio {statistics.median(two) / statistics.median(one):.2f}x"
    )
    print(f"best:   1 rank {max(one):,.0f}, 2 ranks {max(two):,.0f} chars/s, ratio {max(two) / max(one):.2f}x")
    c1, c2 = statistics.median(cpu1), statistics.median(cpu2)
    per_rank = 1 if a.mode == "weak" else 2  # rows per rank relative to the 1-rank run: 1, or 1/2
    print(
        f"CPU time per step and rank: 1 rank {c1 * 1000:.0f} ms, 2 ranks {c2 * 1000:.0f} ms "
        f"(if each rank had a core to itself: {2 * c1 / c2 / per_rank:.2f}x)"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
