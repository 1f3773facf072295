vgg train --arch vgg11_bn --head compact --width-divisor 2 --data fashion-mnist --epochs 88 --batch-size 128 \
  --lr 0.05 --nesterov --schedule cosine --label-smoothing 0.1 --augment crop,flip,erase --test-protocol dense \
  --out runs/fmnist-half-88 --no-progress
