"""Devices in a federated colony: two virtual devices (the firmware's host build on real ptys),
each with its own slice of digits, its own sensor noise and a label skew, learn the model's last
layer on the device (protocol 3) next to one Python client, over real Flower rounds; each device
joins with `openmind colony join --device PORT` as a real process."""

from __future__ import annotations

import numpy as np
import pytest
from vdev_fixtures import VDev

import openmind
from openmind.flow.journal import journal

pytest.importorskip("flwr")

from openmind.pathways.colony.devclient import simulated_slices  # noqa: E402


def test_two_devices_and_a_python_client_improve_on_the_starting_model(vdev_binary, digits_split):
    Xtr, _Xte, ytr, _yte = digits_split
    (Xp, yp), devices = simulated_slices(np.asarray(Xtr, np.float32), np.asarray(ytr))
    with VDev(vdev_binary) as d1, VDev(vdev_binary) as d2:
        model = openmind.federate("digits-devices", Xp, yp, clients=1, rounds=3, local_epochs=2,
                                  devices=[(d1.port, *devices[0]), (d2.port, *devices[1])],
                                  hidden=[32], join_timeout=180, round_timeout=300)
    info = model.info
    rows = [r["summary"]["federated_round"] for r in journal(200, after=0) if "federated_round" in (r.get("summary") or {})]
    assert [r["clients"] for r in rows] == [3, 3, 3]
    print(f"\nstart {info['start_accuracy']:.3f} -> rounds {info['round_accuracy']}")
    for r in rows:
        for d in r["devices"]:
            print(f"round {r['round']}: {openmind.intents.federate.device_text(d)}")
    assert info["eval_accuracy"] > info["start_accuracy"] + 0.4
    assert len(info["device_learning"]) == 2 and all("learned from" in t for t in info["device_learning"])
    assert model.summary()["devices"] == rows[-1]["devices"]  # the card and journal show them
    for r in rows:
        assert len(r["devices"]) == 2
        for d in r["devices"]:
            assert d["update_bytes"] == 12 + 64 + 40  # 10x32 trits, float16 scale and bias a row
            assert d["steps"] == 2 * d["samples"] and d["serial_sent"] > d["serial_received"] > 0
            assert d["head_ram"] == 16664 and d["device_ram"] > d["head_ram"]
    first = rows[0]["devices"]
    assert all(d["accuracy_after"] > d["accuracy_before"] for d in first)  # each device learned
    reasons = [r["reason"] for r in journal(200, after=0) if "federated round" in r.get("reason", "")]
    assert any("device /dev/" in t and "learned from" in t and "held-out accuracy" in t for t in reasons)
    joined = [r["summary"]["device_round"] for r in journal(200, after=0)
              if "device_round" in (r.get("summary") or {})]
    assert len(joined) == 6 and {d["port"] for d in joined} == {d1.port, d2.port}  # the joiners' own rows
