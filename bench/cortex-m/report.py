"""Table and JSON of bench/cortex-m/run.sh (which sets the environment this reads).

Each program calls rsim_cm_mark() twice around every measured region; the markcount plugin logs the
executed-instruction count at each call. Region k spans marks 2k and 2k+1, in the order the program
prints its REGION lines. Every region's count has the program's empty region (the marker call's own
cost) subtracted. Checks, before any number is reported: every op output of both programs equals
TFLite Micro's tensor for the same input (crc32 of intermediates/), and gen's op list agrees with
model_ops.json (types, MACs, per-channel multipliers and shifts).
"""
import json
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

ROOT = Path(os.environ["ROOT"])
IC = Path(os.environ["IC"])
CMSIS = Path(os.environ["CMSIS"])
WORK = Path(os.environ["WORK"])
OUT = Path(os.environ["OUT"])
PERS = ["tb"] + (["insn"] if os.environ.get("CHECK_PLUGIN") == "1" else [])


def fail(msg):
    sys.exit(f"error: bench/cortex-m: {msg}")


def regions(name, per):
    """{label: (instructions, crc)} of one program run, marker cost subtracted."""
    marks = [int(l.split()[1]) for l in (WORK / f"{name}.{per}.marks").read_text().splitlines() if l.startswith("mark ")]
    lines = [l.split() for l in (WORK / f"{name}.{per}.out").read_text().splitlines() if l.startswith("REGION ")]
    if len(marks) != 2 * len(lines):
        fail(f"{name}: {len(marks)} marks for {len(lines)} regions")
    raw = {}
    for k, (_, idx, label, crc) in enumerate(lines):
        if int(idx) != k or not crc.startswith("crc="):
            fail(f"{name}: malformed REGION line {' '.join(lines[k])}")
        raw[label] = (marks[2 * k + 1] - marks[2 * k], int(crc[4:], 16))
    out = {}
    for label, (n, crc) in raw.items():
        prefix = label.split(":")[0] + ":" if ":" in label and not label.startswith("op") else ""
        empty = raw.get(prefix + "empty", raw.get("empty"))
        if empty is None:
            fail(f"{name}: no empty region for {label}")
        out[label] = (n - empty[0], crc)
    out["_marker"] = {k: v[0] for k, v in raw.items() if k.endswith("empty")}
    return out


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


# --- gen's op list against model_ops.json ----------------------------------------------------------
ops = []
for line in (WORK / "gen" / "ops.tsv").read_text().splitlines():
    i, kind, out_id, macs, desc, mult, shift = line.split("\t")
    ops.append(dict(index=int(i), type=kind, out=int(out_id), macs=int(macs), desc=desc,
                    mult=[] if mult == "-" else [int(x) for x in mult.split(",")],
                    shift=[] if shift == "-" else [int(x) for x in shift.split(",")]))
ref = json.loads((IC / "model_ops.json").read_text())["ops"]
if len(ref) != len(ops):
    fail(f"gen wrote {len(ops)} ops, model_ops.json has {len(ref)}")
for o, r in zip(ops, ref):
    if (o["type"], o["out"]) != (r["type"], r["output"]):
        fail(f"op {o['index']}: {o['type']} -> t{o['out']} but model_ops.json has {r['type']} -> t{r['output']}")
    if o["type"] == "CONV_2D":
        if o["macs"] != r["macs"]:
            fail(f"op {o['index']}: {o['macs']} MACs, model_ops.json {r['macs']}")
        if o["mult"] != r["tflm_multiplier"] or o["shift"] != r["tflm_shift"]:
            fail(f"op {o['index']}: per-channel multipliers/shifts differ from model_ops.json")

# --- TFLM's tensors for input 000 ------------------------------------------------------------------
index = json.loads((IC / "intermediates" / "index.json").read_text())
tflm_crc = {t["index"]: zlib.crc32((IC / "intermediates" / t["file"]).read_bytes()) for t in index}

runs = {per: {"cmsis-nn": regions("cmsis-nn", per), "rsim-edge": regions("rsim-edge", per)} for per in PERS}
if "insn" in runs:
    for prog in ("cmsis-nn", "rsim-edge"):
        a, b = runs["tb"][prog], runs["insn"][prog]
        diff = [k for k in a if k != "_marker" and a[k] != b[k]]
        if diff:
            fail(f"{prog}: per-block and per-instruction counts differ in {diff}")
    print("plugin check: per-block and per-instruction counting agree on every region of both programs", file=sys.stderr)
cm, rs = runs["tb"]["cmsis-nn"], runs["tb"]["rsim-edge"]

rows = []
for o in ops:
    i = o["index"]
    want = tflm_crc.get(o["out"])
    c = cm.get(f"op{i}:{o['type']}")
    got = {mode: next((v for k, v in rs.items() if k.startswith(f"{mode}:op{i}:")), None) for mode in ("lean", "default")}
    if c is None or None in got.values():
        fail(f"op {i}: a program did not report it")
    for who, (_, crc) in [("CMSIS-NN", c)] + [(f"rsim-edge {m}", v) for m, v in got.items()]:
        if want is None or crc != want:
            fail(f"op {i} ({o['type']}): {who} output crc {crc:08x} differs from TFLite Micro's {want}")
    rows.append(dict(o, cmsis_nn=c[0], rsim_lean=got["lean"][0], rsim_default=got["default"][0]))
for mode in ("lean", "default"):
    if rs[f"{mode}:invoke"][1] != tflm_crc[37]:
        fail(f"rsim-edge {mode}: the model output differs from TFLite Micro's")


def pct(macs, n):
    return round(100.0 * macs / 2 / n, 2) if macs and n else None


def summary(name, sel, rsim_lean=None, rsim_default=None):
    macs = sum(r["macs"] for r in sel)
    c = sum(r["cmsis_nn"] for r in sel)
    rl = rsim_lean if rsim_lean is not None else sum(r["rsim_lean"] for r in sel)
    rd = rsim_default if rsim_default is not None else sum(r["rsim_default"] for r in sel)
    return dict(name=name, macs=macs, smlad_bound=macs // 2, cmsis_nn=c, rsim_lean=rl, rsim_default=rd,
                ratio_lean=round(rl / c, 2), ratio_default=round(rd / c, 2),
                cmsis_pct_smlad=pct(macs, c), rsim_lean_pct_smlad=pct(macs, rl), rsim_default_pct_smlad=pct(macs, rd))


for r in rows:
    r.update(smlad_bound=r["macs"] // 2, ratio_lean=round(r["rsim_lean"] / r["cmsis_nn"], 2),
             ratio_default=round(r["rsim_default"] / r["cmsis_nn"], 2), cmsis_pct_smlad=pct(r["macs"], r["cmsis_nn"]),
             rsim_lean_pct_smlad=pct(r["macs"], r["rsim_lean"]), rsim_default_pct_smlad=pct(r["macs"], r["rsim_default"]))
convs = [r for r in rows if r["type"] == "CONV_2D"]
totals = [
    summary(f"all {len(convs)} CONV_2D", convs),
    summary(f"other {len(rows) - len(convs)} ops", [r for r in rows if r["type"] != "CONV_2D"]),
    summary("whole model", rows, rs["lean:invoke"][0], rs["default:invoke"][0]),
]
# The other ops are not MAC-bound (640 MACs in the FC among 2.4M+ instructions): no bound for them.
for k in ("cmsis_pct_smlad", "rsim_lean_pct_smlad", "rsim_default_pct_smlad"):
    totals[1][k] = None
totals[2]["note"] = "CMSIS-NN: sum of its ops (no interpreter); rsim-edge: one Engine::invoke"

# --- table -----------------------------------------------------------------------------------------
def fmt(n):
    return f"{n:,}" if n is not None else "-"


def pfmt(p):
    return f"{p:.1f} %" if p is not None else "-"


head = ["layer", "MACs", "CMSIS-NN instr", "rsim-edge instr", "rsim/CMSIS", "CMSIS-NN % SMLAD", "rsim-edge % SMLAD"]
table = []
for r in convs:
    table.append([f"op{r['index']} conv {r['desc']}", fmt(r["macs"]), fmt(r["cmsis_nn"]), fmt(r["rsim_lean"]),
                  f"{r['ratio_lean']:.2f}x", pfmt(r["cmsis_pct_smlad"]), pfmt(r["rsim_lean_pct_smlad"])])
for t in totals:
    table.append([t["name"], fmt(t["macs"]), fmt(t["cmsis_nn"]), fmt(t["rsim_lean"]), f"{t['ratio_lean']:.2f}x",
                  pfmt(t["cmsis_pct_smlad"]), pfmt(t["rsim_lean_pct_smlad"])])
w = [max(len(str(x[i])) for x in [head] + table) for i in range(len(head))]
line = lambda cells: "| " + " | ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(cells)) + " |"
print(line(head))
print("|" + "|".join("-" * (x + 2) if i == 0 else "-" * (x + 1) + ":" for i, x in enumerate(w)) + "|")
for row in table:
    print(line(row))
print(f"\nrsim-edge: Options {{ lean: true }} (ops decoded per invoke; dense convs and FC on the DSP kernel kernels::fast::cortex_m, the rest reference). "
      f"SMLAD bound = MACs/2 instructions. All {len(rows)} op outputs of both programs equal TFLite Micro's.")

# --- JSON ------------------------------------------------------------------------------------------
git = lambda *a: sh("git", "-C", str(ROOT), *a)
src = (CMSIS / "SOURCE.md").read_text() if (CMSIS / "SOURCE.md").exists() else ""
m = re.search(r"commit ([0-9a-f]{40})", src)
result = {
    "what": "executed guest instructions per op of the MLPerf Tiny IC model (ResNet-8), QEMU TCG plugin count",
    "machine": {"emulator": f"qemu-system-arm {os.environ['QEMU_VERSION']}", "board": "mps2-an386", "cpu": "cortex-m4",
                "host": sh("uname", "-srm")},
    "model": {"tflite": str(IC / "pretrainedResnet_quant.tflite"), "input": "inputs/000.bin", "ops": len(rows)},
    "cmsis_nn": {"source": str(CMSIS), "upstream_commit": m.group(1) if m else None,
                 "compiler": sh("arm-none-eabi-gcc", "--version").splitlines()[0],
                 "cflags": os.environ["CFLAGS_M4"] + " -std=c99 -ffunction-sections -fdata-sections (ARM_MATH_DSP from __ARM_FEATURE_DSP)",
                 "marker_cost": cm["_marker"]},
    "rsim_edge": {"git_commit": git("rev-parse", "HEAD"),
                  "uncommitted_runtime_changes": bool(git("status", "--porcelain", "--", "edge-runtime", "models")),
                  "target": os.environ["TARGET"], "rustc": sh("rustc", "--version"),
                  "profile": "release: opt-level 3, lto fat, codegen-units 1, panic abort",
                  "modes": {"lean": "Options { lean: true, ..Default::default() }: ops decoded every invoke; dense int8 convs and FCs on the DSP kernel (kernels::fast::cortex_m, weights read in place), other ops on their reference kernels",
                            "default": "Options::default(): ops prepared once; on a Cortex-M4 the same kernels as lean (DSP conv/FC, reference elsewhere)"},
                  "marker_cost": rs["_marker"]},
    "smlad_bound": "MACs / 2 instructions (SMLAD: two 16x16 MACs per instruction); % of bound = (MACs/2) / instructions",
    "bit_exact": "every op output of both programs equals TFLite Micro's tensor (intermediates/, crc32)",
    "plugin_cross_checked": "insn" in runs,
    "ops": rows,
    "totals": totals,
}
OUT.mkdir(parents=True, exist_ok=True)
(OUT / "cortex-m4.json").write_text(json.dumps(result, indent=1) + "\n")
print(f"wrote {OUT / 'cortex-m4.json'}", file=sys.stderr)
