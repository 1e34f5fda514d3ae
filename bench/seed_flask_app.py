"""A typical hand-rolled image classifier server, as a yardstick for bench/over_http.py.

One process, Flask's threaded development server, the eager torchvision ResNet-18,
preprocessing per request, no batching, no storage. Not part of the product.

    .venv/bin/python -m bench.seed_flask_app PORT WEIGHTS_FILE
"""

import io
import sys

import torch
import torchvision
from flask import Flask, jsonify, request
from PIL import Image
from torchvision import transforms

app = Flask(__name__)
model = torchvision.models.resnet18(weights=None)
model.load_state_dict(torch.load(sys.argv[2], map_location="cpu", weights_only=True))
model.eval()
categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
preprocess = transforms.Compose(
    [
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ]
)


@app.post("/predict")
def predict():
    image = Image.open(io.BytesIO(request.files["image"].read())).convert("RGB")
    with torch.no_grad():
        probabilities = torch.softmax(model(preprocess(image).unsqueeze(0)), dim=1)[0]
    scores, indices = probabilities.topk(3)
    return jsonify(
        [{"label": categories[i], "score": float(s)} for s, i in zip(scores, indices.tolist())]
    )


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
