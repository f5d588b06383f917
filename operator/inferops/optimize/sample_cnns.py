"""The same small CNN in PyTorch and in Keras, trained on scikit-learn's digits (8x8 images): the
models people bring, made on the spot for the format tests and bench/bench_formats.py. Two
convolutions, a pool and two dense layers; the framework is imported only when asked for."""

from __future__ import annotations

import numpy as np

EPOCHS, BATCH = 15, 64


def train_torch_cnn(x_train: np.ndarray, y_train: np.ndarray, epochs: int = EPOCHS):
    """NCHW images (n, 1, 8, 8) and integer labels; returns the trained nn.Sequential in eval mode."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt)).split(BATCH):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    return net.eval()


def train_keras_cnn(x_train: np.ndarray, y_train: np.ndarray, epochs: int = EPOCHS):
    """The Keras twin (NHWC images (n, 8, 8, 1), input named "image"); returns the trained model."""
    import keras

    keras.utils.set_random_seed(0)
    net = keras.Sequential([
        keras.Input((8, 8, 1), name="image"),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10),
    ])
    net.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(x_train, y_train, epochs=epochs, batch_size=BATCH, verbose=0)
    return net
