#!/usr/bin/env bash
cd /work/run95
start=$(date +%s)
/usr/bin/time -v node bin/vgg.js train --arch vgg11_bn --head compact --width-divisor 2 --data fashion-mnist --epochs 40 --batch-size 128 --lr 0.05 --nesterov --schedule cosine --label-smoothing 0.1 --augment crop,flip,erase --no-progress --out runs/fmnist95-a
echo "wall $(( $(date +%s) - start )) s"
