vgg train --arch vgg11_bn --head compact --width-divisor 2 --data fashion-mnist --epochs 84 --val 0 --batch-size 128 \
  --lr 0.05 --nesterov --schedule cosine --label-smoothing 0.1 --augment crop,flip,erase --test-protocol dense \
  --out runs/fmnist-half-84-all --no-progress
# at commit f120d19 (max-pool ties as PyTorch), /usr/bin/time -v: time-v.txt
