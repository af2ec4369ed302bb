# Second call (at once after workers.sh returns: the machine stays warm 30 s): follow the throughput run to its end, then the cores
# of a g6e.xlarge: serve and its workers pinned to 0-3, one worker then two.
T0=$(date +%s); . benchmarks/gpu/carry/calls/common.sh
follow $R/throughput.log $R/throughput.done 540 || { collect c2; exit 0; }
[ "$(el)" -gt 250 ] && { echo "no time left for the pinned runs"; collect c2; exit 0; }
collect c2
PIDS=$(pgrep -f "trellis_box.cli.app serve"; pgrep -f "main.py")
for p in $PIDS; do taskset -a -p -c 0-3 $p >/dev/null; done; echo "pinned: $PIDS"
setsid nohup bash -c "cd $REPO; . benchmarks/gpu/carry/calls/common.sh; \
  PYTHONPATH=$BOX taskset -c 0-3 python3 benchmarks/workers_throughput.py --server http://127.0.0.1:8188 --images 3 \
  --resolution 1024 --baseline $BASELINE --no-prime --max-workers 1 --json-out $R/four-cores-1.json; \
  PYTHONPATH=$BOX taskset -c 0-3 python3 benchmarks/workers_throughput.py --server http://127.0.0.1:8188 --images 4 \
  --resolution 1024 --baseline $BASELINE --no-prime --max-workers 2 --json-out $R/four-cores-2.json; echo done > $R/pinned.done" \
  > $R/pinned.log 2>&1 < /dev/null &
follow $R/pinned.log $R/pinned.done ${UNTIL:-565}
collect c2
