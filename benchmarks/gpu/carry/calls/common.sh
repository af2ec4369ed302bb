# Sourced by every call script, in the repository root on the GPU machine, with the folder
# prepare.py wrote carried at $CARRY (default .gpu/dev).
set -u
REPO=$PWD; D=$REPO/${CARRY:-.gpu/dev}; R=/tmp/hw/results; T0=${T0:-$(date +%s)}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
S=$REPO/benchmarks/gpu/carry/standins; BOX=$REPO/src:/tmp/bs:$S
BASELINE=$REPO/benchmarks/results/h200-2026-12-04-one-worker-1024.json
el() { echo $(( $(date +%s) - T0 )); }
ready_url() { python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8188/trellis-box/ready', timeout=5)" 2>/dev/null; }
# follow LOG DONEFILE UNTIL: print LOG's new lines until DONEFILE exists or UNTIL seconds since T0.
follow() {
  local log=$1 done=$2 until=$3 seen=0 n
  while [ "$(el)" -lt "$until" ]; do
    if [ -f "$log" ]; then n=$(wc -l < "$log"); [ "$n" -gt "$seen" ] && { sed -n "$((seen+1)),${n}p" "$log" | sed "s/^/[+$(el)] /"; seen=$n; }; fi
    [ -f "$done" ] && return 0
    sleep 3
  done
  return 1
}
collect() {  # everything under /tmp/hw/results, compressed, to $OUT
  mkdir -p $OUT; cp $R/*.json $OUT/ 2>/dev/null
  tar czf $OUT/results-$1.tgz -C /tmp/hw results 2>/dev/null; ls -la $OUT
}
