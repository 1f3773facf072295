#!/usr/bin/env python3
"""An Open Inference Protocol (KServe v2 / Triton HTTP) client in Python's standard library only, written from the
protocol's documents, not from this project's code: what a Triton or KServe user's script sends. test/serve-clients.test.ts
drives `vgg serve` with it.

usage: oip_client.py BASE_URL MODEL INPUT.json
INPUT.json: {"shape": [N, C, H, W], "data": [...floats...]}. Prints a JSON object: the model's metadata, and the
first output's data as answered to a JSON request and to a binary (Triton binary tensor data) request.
"""
import json
import struct
import sys
import urllib.request


def get(url):
    with urllib.request.urlopen(url) as r:
        return json.loads(r.read())


def post(url, body, headers):
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req) as r:
        return r.read(), {k.lower(): v for k, v in r.headers.items()}


def main():
    base, model, path = sys.argv[1:4]
    with open(path) as f:
        x = json.load(f)
    ready = get(f"{base}/v2/health/ready")
    meta = get(f"{base}/v2/models/{model}")
    name = meta["inputs"][0]["name"]
    out_name = meta["outputs"][0]["name"]
    url = f"{base}/v2/models/{model}/infer"

    # JSON: the tensor's data as a flat row-major list.
    request = {"inputs": [{"name": name, "shape": x["shape"], "datatype": "FP32", "data": x["data"]}]}
    body, _ = post(url, json.dumps(request).encode(), {"Content-Type": "application/json"})
    as_json = json.loads(body)["outputs"][0]

    # Binary: a JSON header, then the input as little-endian float32; the output asked for as binary too.
    raw = struct.pack(f"<{len(x['data'])}f", *x["data"])
    header = json.dumps({
        "inputs": [{"name": name, "shape": x["shape"], "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": out_name, "parameters": {"binary_data": True}}],
    }).encode()
    body, headers = post(url, header + raw, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    })
    n = int(headers["inference-header-content-length"])
    out = json.loads(body[:n])["outputs"][0]
    size = out["parameters"]["binary_data_size"]
    as_binary = list(struct.unpack(f"<{size // 4}f", body[n:n + size]))

    print(json.dumps({"ready": ready, "metadata": meta, "json": as_json, "binary": {"shape": out["shape"], "data": as_binary}}))


if __name__ == "__main__":
    main()
