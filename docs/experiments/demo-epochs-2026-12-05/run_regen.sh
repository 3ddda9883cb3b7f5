#!/bin/bash
# after run_epochs.sh: each project's translations beside plain regeneration (the untrained control: nothing to train)
while ! grep -q ALLDONE /work/exp/run_epochs.log; do sleep 20; done
export PYTHONPATH=/work/exp/code2
D=/work/main/.venv/bin/diffmine
for p in /work/exp/b120 /work/exp/b120/data/lake/files/builtin/seeds/data*-model* /work/exp/b150/data/lake/files/builtin/seeds/data*-model*; do
  cd $p
  ( DIFFMINE_CONFIG=$p/diffmine.yaml $D eval --dataset builtin --control untrained --no-baseline > regen.log 2>&1; echo rc=$? >> regen.log )
done
echo REGENDONE
