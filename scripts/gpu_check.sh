#!/usr/bin/env bash
# One GPU session's checks, most important first, each under its own time limit inside one
# overall budget, every table written to $OUT as soon as it is printed (a run cut short still
# returns what finished):
#   1. preflight: the card, versions, and the packages the image lacks (carried as wheels in .whl/)
#   2. posconv:   the 128-tap grouped positional convolution alone, three ways
#   3. base:      benchmark.py --shape base --compile --breakdown
#   4. large:     benchmark.py --shape large --compile --breakdown
#   5. transcribe: benchmark_transcribe.py --shape base --clips 256 --repeats 2 (benchmark.py --transcribe's rows)
#   6. parity:    our CTC model against transformers' on the GPU, same weights (fp32, bf16, compiled)
#   7. profile:   the top CUDA kernels of our compiled steps and of transformers' (PROFILE_SHAPE, default base)
#   8. tests marked `gpu`, if the suite has any
# SKIP="parity profile" leaves stages out. Each stage writes $OUT/NAME.txt, plus log.txt and env.txt:
# 8 files, the most the device tool returns.
#
#   OUT=/tmp/out BUDGET_S=510 bash scripts/gpu_check.sh          # on the GPU machine
#   OUT=/tmp/out DEVICE=cpu SHAPES="small" bash scripts/gpu_check.sh   # CPU smoke run of the same path
#
# Wheels (Python 3.12, manylinux x86_64) for what the device image lacks go in .whl/ (ignored by git):
# datasets dill multiprocess rapidfuzz soundfile cffi pycparser soxr.
set -uo pipefail

OUT=${OUT:?set OUT to a folder for the results}
BUDGET_S=${BUDGET_S:-510}  # the whole script; the device call's timeout_s should be a little more
DEVICE=${DEVICE:-cuda}
SHAPES=${SHAPES:-"base large"}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-3}
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-.whl}  # "none": use the packages already installed
SKIP=${SKIP:-}
START=$(date +%s)
mkdir -p "$OUT"
LOG="$OUT/log.txt"

export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

say() { echo "== $* (t=$(($(date +%s) - START)) s)" | tee -a "$LOG"; }

# Run "$@" for at most $1 seconds, or what is left of the budget if less; output to the log and to $OUT/$2.
stage() {
  local cap=$1 name=$2
  shift 2
  if [[ " $SKIP " == *" $name "* ]]; then
    say "$name: skipped (SKIP)"
    return
  fi
  local left=$((BUDGET_S - ($(date +%s) - START)))
  local limit=$((cap < left ? cap : left))
  if ((limit < 20)); then
    say "$name: skipped, ${left} s of the budget left"
    return
  fi
  say "$name: start, limit ${limit} s"
  timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$LOG" >"$OUT/$name.txt"
  say "$name: exit ${PIPESTATUS[0]} (124 = timed out)"
}

# ---- 1. preflight -------------------------------------------------------------------------
say "preflight"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 || true
  if [[ $WHEELS != none ]] && compgen -G "$WHEELS/*.whl" >/dev/null; then
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl \
      && export PYTHONPATH="$PYTHONPATH:/tmp/site"
  fi
  # Our data modules import datasets and rapidfuzz at the top; the benchmark uses neither. If the
  # carried wheels do not import here, stand-ins let the model code load (and say so).
  for module in datasets rapidfuzz.distance soundfile soxr; do
    if ! $PYTHON -c "import $module" 2>/dev/null; then
      echo "WARNING: import $module failed: $($PYTHON -c "import $module" 2>&1 | tail -1)"
      if [[ $module == datasets || $module == rapidfuzz.distance ]]; then
        top=${module%%.*}
        mkdir -p "/tmp/stubs/$top"
        printf 'def __getattr__(name):\n    return type(name, (), {})\n' >"/tmp/stubs/$top/__init__.py"
        [[ $module == rapidfuzz.distance ]] && cp "/tmp/stubs/$top/__init__.py" "/tmp/stubs/$top/distance.py"
        export PYTHONPATH="/tmp/stubs:$PYTHONPATH"
        echo "  using a stand-in for $top"
      fi
    fi
  done
  $PYTHON - <<'EOF'
import sys
import torch, transformers, numpy
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"numpy {numpy.__version__}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"{p.name}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}")
import unispeech, unispeech.transcribe  # noqa: E401 - the imports the benchmark needs
print("unispeech imports ok")
EOF
} 2>&1 | tee -a "$LOG" >"$OUT/env.txt"
export PYTHONPATH="$PWD:/tmp/site"
[[ -d /tmp/stubs ]] && export PYTHONPATH="/tmp/stubs:$PYTHONPATH"

# ---- 2. the positional convolution alone: the largest kernel time in the 2026-11-27 profile ----------
# (cuDNN's legacy implicit-GEMM kernels, 16 calls a pass); cuDNN's default algorithm, its autotuner,
# and the same function as one batched matmul (checked equal first)
stage 60 posconv $PYTHON - "$DEVICE" $SHAPES <<'EOF'
import statistics, sys, time
import torch
import torch.nn.functional as F
sys.path.insert(0, "scripts")
from benchmark_shapes import SHAPES, model_config
from unispeech.modeling.transformer import PositionalConvEmbedding

device = torch.device(sys.argv[1])
shapes = sys.argv[2:] or ["base", "large"]
dtype = torch.bfloat16 if device.type == "cuda" else torch.float32


def unfolded(module, x):
    """The same function as module(x), with the grouped convolution done as one batched matmul."""
    conv = module.conv
    weight = conv.normalized_weight()  # (C, C/G, K)
    b, t, c = x.shape
    groups, taps, pad = conv.groups, weight.shape[-1], conv.padding[0]
    per_group = c // groups
    padded = F.pad(x.transpose(1, 2), (pad, pad))  # (B, C, T + 2 pad)
    cols = padded.unfold(2, taps, 1)[:, :, :t]  # (B, C, T, K): the first T outputs, as num_pad_remove keeps
    cols = cols.reshape(b, groups, per_group, t, taps).transpose(2, 3).reshape(b, groups, t, per_group * taps)
    kernel = weight.reshape(groups, per_group, per_group * taps).transpose(1, 2)  # (G, C/G * K, C/G)
    y = (cols @ kernel).transpose(1, 2).reshape(b, t, c) + conv.bias  # (B, T, C)
    return module.activation(y)


def time_it(fn, x, module, repeats=10, warmup=3):
    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            y = fn(x)
        y.float().sum().backward()
        x.grad = None
        module.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


print("| shape | positional conv, fwd + bwd | ms | TFLOP/s | rel. difference to cuDNN |\n|---|---|---|---|---|")
for shape in shapes:
    config = model_config(shape)
    _, batch, seconds = SHAPES[shape]
    if device.type == "cpu":
        batch, seconds = 2, 2.0
    frames = int(seconds * 50) - 1
    torch.manual_seed(0)
    module = PositionalConvEmbedding(config).to(device)
    x = torch.randn(batch, frames, config.hidden_size, device=device, requires_grad=True)
    c, g, k = config.hidden_size, config.num_conv_pos_embedding_groups, config.num_conv_pos_embeddings
    flops = 3 * 2 * batch * frames * c * (c // g) * k  # fwd + input grad + weight grad
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
        reference = module(x).float()
        diff = ((unfolded(module, x).float() - reference).norm() / reference.norm()).item()
    variants = [("cuDNN, default algorithm", module, "", False), ("cuDNN, benchmark=True", module, "", True),
                ("unfold + batched matmul", lambda x: unfolded(module, x), f"{diff:.1e}", False)]
    for name, fn, rel, benchmark in variants:
        torch.backends.cudnn.benchmark = benchmark
        seconds_taken = time_it(fn, x, module)
        print(f"| {shape} | {name} | {seconds_taken * 1e3:.2f} | {flops / seconds_taken / 1e12:.1f} | {rel} |", flush=True)
    torch.backends.cudnn.benchmark = False
EOF

# ---- 3.-4. the model steps against transformers, one process per shape -------------------------
for shape in $SHAPES; do
  cap=$([[ $shape == large ]] && echo 220 || echo 200)
  stage "$cap" "$shape" $PYTHON scripts/benchmark.py --device "$DEVICE" --shape "$shape" --compile --breakdown \
    --steps "$STEPS" --warmup "$WARMUP"
done

# ---- 5. transcription from files, ours against the transformers loop ------------------------------
first_shape=${SHAPES%% *}
# 512 clips x 4 rows x 4 passes a side took over 150 s on an H200 (2026-11-27), decoding MP3 on the CPU
if [[ $DEVICE == cpu ]]; then clips=(--clips 4 --repeats 1 --batch-size 2); else clips=(--clips 256 --repeats 2); fi
stage 150 transcribe $PYTHON scripts/benchmark_transcribe.py --device "$DEVICE" --shape "$first_shape" "${clips[@]}"

# ---- 6. parity on the device: the same weights through our model and transformers' ------------
stage 90 parity $PYTHON - "$DEVICE" "$first_shape" <<'EOF'
import sys, tempfile
import torch, transformers
sys.path.insert(0, "scripts")
import unispeech
from benchmark import make_batch
from benchmark_shapes import model_config
from unispeech.training.speed import compile_regions

device = torch.device(sys.argv[1])
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.manual_seed(0)
config = model_config(sys.argv[2])
ours = unispeech.UniSpeechForCTC(config).to(device).eval()
with tempfile.TemporaryDirectory() as tmp:
    ours.save_pretrained(tmp)
    theirs = transformers.UniSpeechForCTC.from_pretrained(tmp, attn_implementation="sdpa").to(device).eval()
x, mask, labels = make_batch(4, 6.0, device)  # last row 80 % long: padding and key masks matter
frames = ours.get_feat_extract_output_lengths(mask.sum(-1))
valid = torch.arange(int(frames.max()), device=device)[None] < frames[:, None]  # (B, T)

def run(model, dtype):
    model.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        out = model(x, attention_mask=mask, labels=labels)
    out.loss.backward()
    grads = {n: p.grad.float().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.float()[valid], out.loss.float().item(), grads

def rel(a, b):
    return ((a - b).norm() / b.norm()).item()

reference = run(theirs, None)
def compare(label, result):
    logits, loss, grads = result
    ref_logits, ref_loss, ref_grads = reference
    # a key bias has no gradient in exact arithmetic (it shifts every score of a query alike): skip its noise
    names = [n for n in ref_grads if n in grads and not n.endswith("k_proj.bias")]
    worst = max((rel(grads[n], ref_grads[n]), n) for n in names)
    flat = rel(torch.cat([grads[n].flatten() for n in names]), torch.cat([ref_grads[n].flatten() for n in names]))
    print(f"| {label} | logits rel {rel(logits, ref_logits):.2e} | loss {loss:.4f} vs {ref_loss:.4f} "
          f"| all grads rel {flat:.2e} | worst grad rel {worst[0]:.2e} ({worst[1]}) |", flush=True)

compare("ours fp32 vs transformers fp32", run(ours, None))
bf16 = torch.bfloat16 if device.type == "cuda" else None
compare("transformers bf16 vs transformers fp32", run(theirs, bf16))
compare("ours bf16 vs transformers fp32", run(ours, bf16))
compile_regions(ours)
compare("ours compiled bf16 vs transformers fp32", run(ours, bf16))
EOF

# ---- 7. where the GPU time goes: top kernels, ours (compiled) and transformers, base steps ------
stage 120 profile $PYTHON - "$DEVICE" "${PROFILE_SHAPE:-$first_shape}" <<'EOF'
import sys
import torch
sys.path.insert(0, "scripts")
import unispeech
from benchmark import hf_models, make_batch, optimizer_for
from benchmark_shapes import SHAPES, model_config
from torch.profiler import ProfilerActivity, profile
from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices
from unispeech.training.speed import compile_regions

device, shape = torch.device(sys.argv[1]), sys.argv[2]
config = model_config(shape)
_, batch, seconds = SHAPES[shape]
if device.type == "cpu":
    batch, seconds = 2, 2.0
x, mask, labels = make_batch(batch, seconds, device)
dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
hf_ctc, hf_pre = hf_models(config, device, "sdpa")
ours_ctc = unispeech.UniSpeechForCTC(config).to(device).train()
ours_pre = unispeech.UniSpeechForPreTraining(config).to(device).train()
compile_regions(ours_ctc), compile_regions(ours_pre)
generator = torch.Generator(device=device).manual_seed(0)
frames = int(ours_pre.get_feat_extract_output_lengths(x.shape[1]))
frame_mask = hf_pre._get_feature_vector_attention_mask(frames, mask)

def step(model, **extra):
    opt = optimizer_for(model, device)
    def run():
        kwargs = dict(extra)
        if model is hf_pre:
            time_mask = _compute_mask_indices((batch, frames), 0.5, 10, attention_mask=frame_mask.cpu(), min_masks=2)
            negatives = _sample_negative_indices((batch, frames), config.num_negatives, mask_time_indices=time_mask)
            kwargs["mask_time_indices"] = torch.tensor(time_mask, device=device, dtype=torch.bool)
            kwargs["sampled_negative_indices"] = torch.tensor(negatives, device=device, dtype=torch.long)
        with torch.autocast(device.type, dtype=dtype):
            loss = model(x, attention_mask=mask, **kwargs).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return run

steps = {
    "ours pretrain (compiled)": step(ours_pre, labels=labels, generator=generator),
    "transformers pretrain": step(hf_pre),
    "ours ctc (compiled)": step(ours_ctc, labels=labels),
    "transformers ctc": step(hf_ctc, labels=labels),
}
activity = ProfilerActivity.CUDA if device.type == "cuda" else ProfilerActivity.CPU
sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
for name, run in steps.items():
    for _ in range(3):
        run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    with profile(activities=[activity]) as prof:
        for _ in range(2):
            run()
        if device.type == "cuda":
            torch.cuda.synchronize()
    print(f"\n### {name}: 2 steps, top kernels by self device time", flush=True)
    print(prof.key_averages().table(sort_by=sort, row_limit=18, max_name_column_width=70), flush=True)
EOF

# ---- 8. GPU-marked tests, if any --------------------------------------------------------------
if grep -rqE "mark\.(gpu|cuda)" tests 2>/dev/null; then
  stage 60 tests $PYTHON -m pytest -x -q -m "gpu or cuda" tests -p no:cacheprovider
else
  say "tests: the suite has no GPU-marked tests"
fi
say "done"
