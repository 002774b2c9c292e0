"""Shared by the benchmarks: data paths, SST-2 rows, the machine's description, and a fine-tuned SST-2
model to measure (trained once, cached)."""

import csv
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SST2 = DATA / "sst2"
CACHE = ROOT / "runs"  # ignored by git


def cpu_description(emulation: str | None = None) -> str:
    """CPU model and the flags that decide our speed: bf16 (AVX-512 BF16 / AMX) and VNNI; then `emulation`,
    emulate_avx2()'s line, where the run is emulated."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    bf16 = "yes" if flags & {"avx512_bf16", "amx_bf16"} else "no"
    vnni = "yes" if flags & {"avx512_vnni", "avx_vnni"} else "no"
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    from finebert.engines import usable_cores

    return f"CPU: {model}, {usable_cores()} cores, {isa}, bf16 {bf16}, VNNI {vnni}" + (f"; {emulation}" if emulation else "")


AVX2_RUN = "FINEBERT_BENCH_AVX2"  # set in a benchmark re-run by emulate_avx2()


def emulate_avx2() -> str:
    """Runs this benchmark again (os.execve) with benchmarks/avx2_only.c preloaded, so that it and every process
    it starts see an AVX2 CPU: no AVX-512, VNNI, bf16 or AMX, whatever PyTorch, MKL, oneDNN or ONNX Runtime asks.
    In that run, checks that PyTorch sees AVX2 and returns the line to print with the figures. Needs Linux's
    CPUID faulting (cpuid_fault in /proc/cpuinfo) and a C compiler; the library is built once, into runs/."""
    if os.environ.get(AVX2_RUN) == "1":
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
        if capability != "AVX2":
            raise SystemExit(f"--emulate-avx2: PyTorch still sees {capability}, not AVX2; the emulation failed")
        return ("EMULATED AVX2: every process sees a CPU without AVX-512, VNNI, bf16 or AMX (benchmarks/avx2_only.c); "
                "clock, caches and memory are this CPU's")
    if "cpuid_fault" not in Path("/proc/cpuinfo").read_text():
        raise SystemExit("--emulate-avx2 needs CPUID faulting (cpuid_fault in /proc/cpuinfo), which this machine lacks")
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("--emulate-avx2 builds benchmarks/avx2_only.c: install a C compiler (apt-get install gcc)")
    source, library = Path(__file__).with_name("avx2_only.c"), CACHE / "avx2_only.so"
    if not library.is_file() or library.stat().st_mtime < source.stat().st_mtime:
        CACHE.mkdir(exist_ok=True)
        subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(source), "-ldl"], check=True)
    preload = " ".join(filter(None, [str(library), os.environ.get("LD_PRELOAD")]))
    os.execve(sys.executable, [sys.executable, *sys.argv], dict(os.environ, LD_PRELOAD=preload, **{AVX2_RUN: "1"}))


def read_tsv(path, rows=None):
    with open(path, encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        data = [(text, int(label)) for text, label in reader]
    return data[:rows] if rows else data


def sst2_model(folder=None) -> Path:
    """A model folder fine-tuned on SST-2 with ONNX engines: `folder`, or one trained on 8,000 rows and cached."""
    if folder:
        return Path(folder)
    folder = CACHE / "sst2-8k"
    if not (folder / "finebert.json").is_file():
        import finebert
        from finebert.data import Dataset
        from finebert.export import export

        texts, labels = zip(*read_tsv(SST2 / "train.tsv", 8000))
        print("training a benchmark model on 8,000 SST-2 rows (cached in runs/) ...", file=sys.stderr)
        finebert.train(Dataset(list(texts), [str(y) for y in labels], "sst2"), output=folder, quiet=True,
                       label_names=["negative", "positive"], epochs=1)
        export(folder, validate=SST2 / "dev.tsv")
    return folder
