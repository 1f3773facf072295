#!/bin/sh
cd /work/run95b
/usr/bin/time -v ./bin/vgg.js train --arch vgg11_bn --head compact --data fashion-mnist --epochs 30 --batch-size 128 \
  --lr 0.05 --nesterov --schedule cosine --label-smoothing 0.1 --augment crop,flip,erase --test-protocol dense \
  --out runs/fmnist-full --no-progress
