# First call: serve with W workers (auto at max resolution 1024 by default), the throughput run
# (first jobs STAGGER s apart, 0 by default) in its own session (it outlives this call while the
# machine stays warm), followed until ~565 s; with GPU_TESTS=1, pytest -m gpu against the same
# server after it.
T0=$(date +%s); . benchmarks/gpu/carry/calls/common.sh
W=${W:-auto}; IMAGES=${IMAGES:-20}; STAGGER=${STAGGER:-0}
[ -d $D/ext ] || { echo "no $D/ext: run benchmarks/gpu/carry/prepare.py --extensions sm_90 first"; exit 1; }
mkdir -p $R /tmp/g
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; python3 -c 'import torch;print(torch.__version__)'
tar xzf $D/src.tgz -C /tmp/g || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/cs $D/comfy-wheels/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/bs $D/box-wheels/*.whl || exit 1
if [ -f $D/kcache.tgz ]; then mkdir -p /tmp/hw/cache && tar xzf $D/kcache.tgz -C /tmp/hw/cache && echo "seeded kernel caches: $(du -sh /tmp/hw/cache)"; fi
echo "installed at +$(el) s"
setsid nohup nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -lms 500 > $R/smi.csv 2>&1 < /dev/null &
setsid nohup bash -c 'while true; do echo "t $(date +%s)"; nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader; sleep 10; done' > $R/apps.log 2>&1 < /dev/null &
PYTHONPATH=$BOX python3 benchmarks/gpu/harness.py up --sources /tmp/g/src --work /tmp/hw --wheels $D/ext \
  --comfy-path /tmp/cs --comfy-path $S --box-path /tmp/bs --box-path $S \
  --workers $W --max-resolution 1024 --no-warmup --low-vram off || { tail -60 $R/serve.log; collect c1; exit 1; }
echo "serve started at +$(el) s"
setsid nohup bash -c "cd $REPO; . benchmarks/gpu/carry/calls/common.sh; until ready_url; do pgrep -f \"cli.app serve\" >/dev/null || { echo serve exited; echo exit 1 > $R/throughput.done; exit 1; }; sleep 2; done; echo ready at +\$(el) s; \
  PYTHONPATH=$BOX python3 benchmarks/workers_throughput.py --server http://127.0.0.1:8188 --images $IMAGES \
  --resolution 1024 --baseline $BASELINE --stagger $STAGGER --json-out $R/throughput.json; echo exit \$? > $R/throughput.done; \
  [ ${GPU_TESTS:-0} = 1 ] && TRELLIS_BOX_GPU_HARNESS=/tmp/hw PYTHONPATH=$BOX python3 -m pytest -m gpu tests/test_gpu.py -q \
  -p no:cacheprovider > $R/pytest.log 2>&1; echo done > $R/pytest.done" \
  > $R/throughput.log 2>&1 < /dev/null &
follow $R/throughput.log $R/throughput.done ${UNTIL:-560}
# Carried back: the next lease seeds its caches with it (first-use compilation, about 45 MB of Triton).
grep -E "error|Error|Traceback|ready|worker [0-9]" $R/serve.log | tail -25
du -sh /tmp/hw/cache/*; tar czf $OUT/kcache.tgz -C /tmp/hw/cache triton flex_gemm 2>/dev/null
collect c1
