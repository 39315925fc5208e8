cd "$(dirname "$0")/.."
echo "== P2"; python benchmarks/p2_curves.py
echo "== P3"; python benchmarks/p3_scoring.py --rm runs/git-commits/rm/user-prob --pool runs/git-commits/test.parquet --data ../shared/data/git-commits --split test --batch 128
echo "== P4"; rm -rf /tmp/demo_out; /usr/bin/time -v ttpkit demo --out /tmp/demo_out > /tmp/demo_stdout.txt 2> /tmp/demo_time.txt; grep -E "Elapsed|Maximum resident" /tmp/demo_time.txt; cat /tmp/demo_stdout.txt
echo "== P1"; python benchmarks/p1_sampling.py --queries 4 --n 16
echo "== end"
