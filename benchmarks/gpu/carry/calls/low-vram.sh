# At once after workers.sh (or pinned.sh): follow what runs to its end (the throughput run up to
# THROUGHPUT_UNTIL s), then one worker with low_vram on, bench RES (cold, warm), then pytest -m gpu
# against it.
T0=$(date +%s); . benchmarks/gpu/carry/calls/common.sh
follow $R/throughput.log $R/throughput.done ${THROUGHPUT_UNTIL:-200}
[ -f $R/pinned.log ] && follow $R/pinned.log $R/pinned.done 200
pkill -f workers_throughput; PYTHONPATH=$BOX python3 benchmarks/gpu/harness.py down --work /tmp/hw
for i in $(seq 30); do pgrep -f "main.py" >/dev/null || break; sleep 1; done; echo "old serve gone at +$(el) s"
L=$R/lowvram; mkdir -p $L
setsid nohup bash -c "cd $REPO; . benchmarks/gpu/carry/calls/common.sh; \
  PYTHONPATH=$BOX python3 benchmarks/gpu/harness.py up --sources /tmp/g/src --work /tmp/hw --out $L --wheels $D/ext \
  --comfy-path /tmp/cs --comfy-path $S --box-path /tmp/bs --box-path $S \
  --workers 1 --no-warmup --low-vram on && \
  PYTHONPATH=$BOX python3 benchmarks/gpu/harness.py bench --work /tmp/hw --out $L --resolutions ${RES:-1024} --images 2 --tag lowvram; \
  TRELLIS_BOX_GPU_HARNESS=/tmp/hw PYTHONPATH=$BOX python3 -m pytest -m gpu tests/test_gpu.py -q -p no:cacheprovider 2>&1 | tail -30; \
  echo done > $L/lowvram.done" > $L/lowvram.log 2>&1 < /dev/null &
follow $L/lowvram.log $L/lowvram.done ${UNTIL:-560}
cat $L/bench-lowvram.log 2>/dev/null | tail -30
collect c3
