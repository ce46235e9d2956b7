"""Kill every stage at random moments and check that nothing is lost or mixed up.

    .venv/bin/python experiments/chaos.py [--kills 20] [--stages corpus,vocab,...] [--work_dir DIR]

For each stage (corpus, vocab, build_data, pretrain, finetune, export), on the first
--corpus_lines lines of the NSMC review corpus:
1. the stage runs once undisturbed into `ref/`: the reference;
2. in `run/` (same relative paths, so recorded command lines match) the stage is started
   and killed with SIGKILL (its whole process group) at a moment drawn uniformly between a
   quarter of the reference's wall time (most of which is start-up) and all of it; it is
   started again, as a user would, until --kills kills were
   made; a run that finishes before its kill is checked and the folder wiped;
3. after every kill, each output file present must equal the reference's (complete or
   absent: no half-written or mixed-up file); hidden temporaries and build_data's
   `manifest.partial.json` (what the next run resumes from) may remain until the next start;
4. the run that finally completes must leave exactly the reference's files, temporaries
   gone, byte for byte equal. JSON files are compared without their timing fields; the
   pretraining `checkpoint` index (it holds timestamps) and TensorBoard events are skipped.

A kill counts as survived when (3) holds after it and the completed run that follows
meets (4). Prints a line per kill; the last line is a JSON object
{stage: {"kills": n, "survived": m, ...}}.
"""
import argparse
import fnmatch
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
STAGES = ("corpus", "vocab", "build_data", "pretrain", "finetune", "export")

# Files that legitimately differ between two identical runs.
SKIPPED = ("train/*", "eval/*", "*/train/*", "*/eval/*", "checkpoint", "*/checkpoint", "*.lock")
# Records of work in progress, which a killed run leaves by design for the next to resume from.
PROGRESS_FILES = ("manifest.partial.json",)
TIMING_KEYS = ("time", "seconds", "secs", "per_s", "elapsed", "started", "date", "wall")


def stage_commands(inputs):
    """{stage: (argv after `python -m`, output path relative to the run folder)}; `inputs`
    holds absolute paths of the upstream references and the raw data."""
    py = [sys.executable, "-m"]
    pretrain_sets = ["--set", "num_train_steps=40", "--set", "save_checkpoints_steps=10",
                     "--set", "iterations_per_loop=5", "--set", "keep_checkpoint_max=10"]
    return {
        "corpus": (py + ["electra_ko.corpus", "--input", inputs["raw"], "--output",
                         "out/corpus.txt"], "out"),
        "vocab": (py + ["electra_ko.vocab", "--input", inputs["corpus"], "--output_dir", "out",
                        "--vocab_size", "4000", "--limit_alphabet", "1500",
                        "--heldout_lines", "500"], "out"),
        "build_data": (py + ["electra_ko.build_data", "--corpus", inputs["corpus"], "--vocab",
                             inputs["vocab"], "--output_dir", "out", "--num_shards", "4",
                             "--num_workers", "2", "--max_seq_length", "64"], "out"),
        "pretrain": (py + ["electra_ko.pretrain", "--config", os.path.join(REPO, "configs",
                                                                           "debug.json"),
                           "--vocab_file", os.path.join(inputs["vocab"], "vocab.txt"),
                           "--pretrain_tfrecords", inputs["shards"], "--model_dir", "out"]
                     + pretrain_sets, "out"),
        "finetune": (py + ["electra_ko.finetune", "--task", "nsmc", "--data_dir", inputs["nsmc"],
                           "--init_checkpoint", os.path.join(inputs["model"], "discriminator"),
                           "--output_dir", "out", "--max_train_examples", "600",
                           "--max_eval_examples", "200", "--epochs", "1",
                           "--max_seq_length", "64"], "out"),
        "export": (py + ["electra_ko.export", "--model_dir", inputs["model"], "--output_dir",
                         "out"], "out"),
    }


def normalised(path):
    """File content to compare: JSON without timing fields, other files as bytes."""
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".json"):
        try:
            return json.dumps(_without_timing(json.loads(data)), sort_keys=True).encode()
        except ValueError:
            return data
    return data


def _without_timing(value):
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items()
                if not any(word in k.lower() for word in TIMING_KEYS)}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def snapshot(folder):
    """{relative path: sha256 of the normalised content} of every file under `folder`."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder)
            if any(fnmatch.fnmatch(relative, pattern) for pattern in SKIPPED):
                continue
            files[relative] = hashlib.sha256(normalised(path)).hexdigest()
    return files


def is_temporary(relative):
    return any(part.startswith(".") or part.endswith("_temp") for part in relative.split(os.sep))


def partial_problems(run_files, ref_files):
    """Published files that are not the reference's (temporaries and progress records
    aside)."""
    return [name for name, digest in run_files.items()
            if not is_temporary(name) and name not in PROGRESS_FILES
            and ref_files.get(name) != digest]


def final_problems(run_files, ref_files):
    missing = sorted(set(ref_files) - set(run_files))
    extra = sorted(set(run_files) - set(ref_files))
    differ = sorted(n for n in set(run_files) & set(ref_files) if run_files[n] != ref_files[n])
    return [f"missing {n}" for n in missing] + [f"extra {n}" for n in extra] + \
        [f"differs {n}" for n in differ]


def start(argv, cwd, log):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    return subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def run_to_end(argv, cwd, log_path):
    with open(log_path, "ab") as log:
        started = time.perf_counter()
        code = start(argv, cwd, log).wait()
    if code != 0:
        raise SystemExit(f"{argv[2]} failed with exit code {code}; see {log_path}")
    return time.perf_counter() - started


def kill_group(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def chaos(stage, argv, output, work_dir, kills, rng):
    """Kill `stage` `kills` times; returns its tally."""
    ref_cwd, run_cwd = os.path.join(work_dir, stage, "ref"), os.path.join(work_dir, stage, "run")
    for folder in (ref_cwd, run_cwd):
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
    log_path = os.path.join(work_dir, stage, "log.txt")
    ref_seconds = run_to_end(argv, ref_cwd, log_path)
    ref_files = snapshot(os.path.join(ref_cwd, output))
    tally = {"kills": 0, "survived": 0, "completed_runs": 0, "reference_seconds":
             round(ref_seconds, 1), "failures": []}
    pending = []  # kills whose files were fine, awaiting the next completed run
    while tally["kills"] < kills or pending:
        delay = rng.uniform(0.25, 1.0) * ref_seconds if tally["kills"] < kills else None
        with open(log_path, "ab") as log:
            process = start(argv, run_cwd, log)
            try:
                code = process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                code = None
        if code is None:
            kill_group(process)
            tally["kills"] += 1
            run_files = snapshot(os.path.join(run_cwd, output))
            problems = partial_problems(run_files, ref_files)
            print(f"{stage}: kill {tally['kills']} at {delay:.1f}s: "
                  f"{len(run_files)} files, {'ok' if not problems else problems[:3]}", flush=True)
            if problems:
                tally["failures"].append(f"kill {tally['kills']} at {delay:.1f}s: {problems[:3]}")
            else:
                pending.append(tally["kills"])
            continue
        if code != 0:
            tally["failures"].append(f"restart exited {code}; see {log_path}")
            print(f"{stage}: restart exited {code}; see {log_path}", flush=True)
            break
        tally["completed_runs"] += 1
        problems = final_problems(snapshot(os.path.join(run_cwd, output)), ref_files)
        print(f"{stage}: completed run {tally['completed_runs']}: "
              f"{'equal to the reference' if not problems else problems[:3]}", flush=True)
        if problems:
            tally["failures"].append(f"completed run after kills {pending}: {problems[:3]}")
        else:
            tally["survived"] += len(pending)
        pending = []
        shutil.rmtree(run_cwd)
        os.makedirs(run_cwd)
    return tally


def prepare_inputs(work_dir, corpus, lines):
    """The raw corpus excerpt and the upstream references each stage reads."""
    raw = os.path.join(work_dir, "raw.txt")
    if not os.path.exists(raw):
        with open(corpus, encoding="utf-8") as src, open(raw, "w", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if i >= lines:
                    break
                dst.write(line)
    ref = lambda stage: os.path.join(work_dir, stage, "ref", "out")  # noqa: E731
    return {"raw": raw, "corpus": os.path.join(ref("corpus"), "corpus.txt"),
            "vocab": ref("vocab"), "shards": ref("build_data"), "model": ref("pretrain"),
            "nsmc": os.path.join(DATA, "nsmc")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="kills per stage")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--corpus", default=os.path.join(DATA, "corpus", "nsmc_reviews.txt"))
    parser.add_argument("--corpus_lines", type=int, default=30000)
    parser.add_argument("--work_dir", default="/tmp/electra_ko_chaos")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    stages = args.stages.split(",")
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stages {unknown}; known: {', '.join(STAGES)}")
    os.makedirs(args.work_dir, exist_ok=True)
    inputs = prepare_inputs(args.work_dir, args.corpus, args.corpus_lines)
    commands = stage_commands(inputs)
    rng = random.Random(args.seed)
    print(f"chaos: {args.kills} kills per stage, work dir {args.work_dir}", flush=True)
    results = {}
    for stage in STAGES:  # upstream first: later stages read earlier references
        if stage in stages:
            argv, output = commands[stage]
            results[stage] = chaos(stage, argv, output, args.work_dir, args.kills, rng)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
