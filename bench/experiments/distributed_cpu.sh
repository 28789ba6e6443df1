#!/bin/bash
# One process against two torch.distributed ranks (gloo) on the CPU: car_index of conv1 of
# alexnet-tiny on 200 Tiny ImageNet val images (1 per class), batch 100 (one batch per rank).
# Runs: 1 process x 2 threads, 1 process x 1 thread, torchrun 2 processes x 1 thread (torchrun's
# default OMP_NUM_THREADS=1), twice; then the fixed cost (prune --n-remove 0: start, load, one
# base pass); then checks that the tables are the same bytes. Load average before each run.
# Output: bench/results/cpu-avx2/distributed-vm-cpu.log. Run from the repository root with
# CARLIB_DATA_DIR set.
PY=.venv/bin/python
TR=.venv/bin/torchrun
OUT=$(mktemp -d)
ARGS="--layer conv1 --per-class-images 1 --batch-size 100 --quiet"
t() { local s=$(date +%s.%N); "$@" > /dev/null 2>&1; local rc=$?; echo "$(echo "$(date +%s.%N) - $s" | bc) s rc=$rc"; }
for rep in 1 2; do
  echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "1proc-2thr $(t nice -n 10 $PY -m carlib car $ARGS --out $OUT/one.csv)"
  echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "1proc-1thr $(OMP_NUM_THREADS=1 t nice -n 10 $PY -m carlib car $ARGS --out $OUT/one1.csv)"
  echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "2proc-1thr $(t nice -n 10 $TR --nproc-per-node 2 --master-port 29517 -m carlib car $ARGS --out $OUT/two.csv)"
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "fixed-1proc $(t nice -n 10 $PY -m carlib prune $ARGS --n-remove 0 --out $OUT/p0.csv)"
echo "fixed-2proc $(t nice -n 10 $TR --nproc-per-node 2 --master-port 29518 -m carlib prune $ARGS --n-remove 0 --out $OUT/p0b.csv)"
cmp $OUT/one.csv $OUT/two.csv && echo "one.csv == two.csv"
cmp $OUT/one.csv $OUT/one1.csv && echo "one.csv == one1.csv"
(cd $OUT && sha256sum *.csv)
