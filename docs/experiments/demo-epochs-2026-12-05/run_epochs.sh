#!/bin/bash
export PYTHONPATH=/work/exp/code2
D=/work/main/.venv/bin/diffmine
cd /work/exp/b120
( /usr/bin/time -v $D materialize --dataset builtin > mat0.log 2>&1; echo rc=$? >> mat0.log )
( $D eval --dataset builtin --no-control > eval0.log 2>&1; echo rc=$? >> eval0.log )
( /usr/bin/time -v $D eval --dataset builtin --seeds 3 --no-control > seeds.log 2>&1; echo rc=$? >> seeds.log )
cd /work/exp/b150
( /usr/bin/time -v $D eval --dataset builtin --seeds 3 --no-control > seeds.log 2>&1; echo rc=$? >> seeds.log )
echo ALLDONE
