"""Write notebooks/quickstart.ipynb, ebb_and_flow.ipynb and ingest.ipynb from the cell sources below.

The notebooks are committed without outputs; edit them here (reviewable Python) and re-run
`python scripts/make_notebooks.py`, or edit them in JupyterLab and keep the outputs cleared.
"""

from __future__ import annotations

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parents[1] / "notebooks"

DATA = '''import numpy as np

# A small, digit-like data set made on the spot (no download): 10 classes, 64 features each,
# every class a noisy copy of its own 8x8 prototype. Seeded, so every run sees the same data.
rng = np.random.default_rng(7)
prototypes = rng.normal(size=(10, 64)).astype(np.float32)
labels = rng.integers(0, 10, size=2000)
images = prototypes[labels] + rng.normal(scale=1.2, size=(2000, 64)).astype(np.float32)
X_train, y_train = images[:1600], labels[:1600]
X_test, y_test = images[1600:], labels[1600:]
X_train.shape, X_test.shape'''

QUICKSTART = [
    ("md", """# openmind quickstart

A cell says **what** it wants — train a model, sense a signal, infer on data — and openmind decides
**how**, from what this machine has right now: a CUDA GPU, a cloud endpoint or language-model key,
an ESP32 on a serial port, or its own memory of earlier results. When something is missing it takes
the next pathway and tells you, in a *decision card* under the cell, which one it took and why.

This notebook runs on a laptop with nothing attached. Run it twice: the second time the training
cell answers from **muscle memory** (`CACHED`) instead of training again."""),
    ("code", """%load_ext openmind.jupyter
import openmind

%openmind status"""),
    ("md", """The table above is what openmind found. Absent resources are not errors: each one comes with the
reason it is absent, and the router simply leaves that pathway out.

## 1. Train a ternary classifier

The model keeps its weights in {-1, 0, +1} (times a scale per layer): 16× smaller than float32, and
small enough for a microcontroller. First some data:"""),
    ("code", DATA),
    ("md", """`%%openmind train` runs the cell with a routing policy in force. Here `--fallback cached` says:
try the best pathway, and if it fails, settle for a model muscle memory already holds. Plain calls to
`openmind.train_or_load` inside the cell obey it — the magic only sets the policy and shows the card."""),
    ("code", """%%openmind train --fallback cached
model = openmind.train_or_load("digits", X_train, y_train)
accuracy = float((model.predict(X_test) == y_test).mean())
print(f"test accuracy: {accuracy:.1%}")"""),
    ("md", """The card says `full_train/HARDCODE` on a first run (trained here, on the CPU, because there is no
GPU) and `muscle_memory/CACHED` on a second run (same name, same data, same settings: nothing to
retrain). Every result also carries its route: `model.route.pathway`, `.decision`, `.reason`.

## 2. Sense a temperature

With an ESP32 on a serial port, openmind would read the sensor (`hardware_in_loop`). Without one it
simulates the signal from a pattern fitted on earlier real captures, or — the very first time — from
a built-in prior, and marks the data as synthetic."""),
    ("code", """%%openmind sense
temperature = openmind.sense_or_simulate("temperature", duration="10min", rate="1Hz")
print(f"{len(temperature.values)} samples from {temperature.source}: "
      f"mean {float(temperature.values.mean()):.1f} {temperature.unit}")"""),
    ("md", """## 3. Infer

The trained model is in local memory, so inference runs right here on the CPU (`HARDCODE`); run the
cell again and the predictions for the same data come straight from memory (`CACHED`)."""),
    ("code", """%%openmind infer
predictions = openmind.infer_adaptive(model, X_test)
print("first predictions:", list(predictions.values[:10]))"""),
    ("md", """## What happened

Every decision is in the journal (the JupyterLab sidebar shows it live):"""),
    ("code", "%openmind log -n 5"),
    ("md", """Things to try:

- `%openmind assume gpu=off api=off` pretends those resources are absent, so you can see how a cell
  routes on a smaller machine (`%openmind assume reset` undoes it).
- `%%openmind train --fresh` skips muscle memory and trains again; `--budget 30s` limits the compute.
- `%openmind?` lists every option; `%config OpenmindMagics.fallback = "cached"` sets a default."""),
]

EBB = [
    ("md", """# Ebb and flow: simulate, train, meet the real world, recalibrate, retrain

A model for a sensor is often trained before the sensor exists. openmind makes the loop explicit:

1. **simulate** the signal (a built-in prior, or a pattern fitted on earlier real captures),
2. **train** on the simulated data,
3. **validate** on real data from the device — when one is attached,
4. **recalibrate**: real captures are fitted into a pattern, so the next simulation looks like reality,
5. **retrain** on the recalibrated simulation, fine-tuning the model from step 2.

With no board attached, the next cell starts the firmware's **virtual device** (the ESP32 firmware
built for this machine and served on a pseudo-terminal; a C compiler builds it on first use), so
steps 3 and 6 still read real protocol traffic over `hardware_in_loop`. Without a compiler either,
every step still runs: step 3 says in its card that the readings were simulated."""),
    ("code", """%load_ext openmind.jupyter
import numpy as np
import openmind
from openmind.intents.board import board_or_virtual

board = board_or_virtual()  # the ESP32 if one answers, else the firmware's virtual device
print(board)
# a virtual device streams in real time: the same 1800 samples at 50 Hz take 36 s, not 30 min
rate, real_duration = ("50Hz", "36s") if board.virtual else ("1Hz", "30min")

%openmind status"""),
    ("md", """A ternary task: is the room **cold**, **comfortable** or **hot**? The features are one-minute
windows of temperature readings."""),
    ("code", '''def windows(signal, width=60):
    """Cut a signal into windows of `width` samples; label each by its mean: 0 cold, 1 ok, 2 hot."""
    values = np.asarray(signal.values, dtype=np.float32)
    n = len(values) // width
    X = values[: n * width].reshape(n, width)
    level = X.mean(axis=1)
    y = np.digitize(level, np.quantile(level, [1 / 3, 2 / 3]))
    return X - X.mean(), y'''),
    ("md", "## 1. Simulate"),
    ("code", """%%openmind sense --source simulate
simulated = openmind.sense_or_simulate("temperature", duration="6h", rate="1Hz")
X_sim, y_sim = windows(simulated)
print(simulated.source, X_sim.shape, np.bincount(y_sim))"""),
    ("md", "## 2. Train on the simulation"),
    ("code", """%%openmind train
model = openmind.train_or_load("room", X_sim, y_sim)"""),
    ("md", """## 3. Validate on real data

`--source auto` reads the ESP32 (or the virtual device) when it offers `temperature`; otherwise the
card says why not and the data is simulated again (so the score below is not a real validation).
The card's `sim→real distance` shows how far the simulation was from this capture, and how far the
pattern refitted on it is."""),
    ("code", """%%openmind sense --source auto --timeout 5s
real = openmind.sense_or_simulate("temperature", duration=real_duration, rate=rate)
X_real, y_real = windows(real)
score = float((model.predict(X_real) == y_real).mean())
print(f"accuracy on {real.source} data: {score:.1%}")
real"""),
    ("md", """## 4. Recalibrate the simulator, 5. retrain

Real captures are fitted into a pattern in muscle memory; the next simulation of `temperature` is
drawn from that pattern (`muscle_memory/HYBRID`, "fitted on real captures") instead of the prior.
Retraining `room` on it starts from the model of step 2 (`fine_tune/HYBRID` when the data is small)."""),
    ("code", """%%openmind sense --source simulate
recalibrated = openmind.sense_or_simulate("temperature", duration="1h", rate="1Hz")
X_cal, y_cal = windows(recalibrated)
print(recalibrated.source, X_cal.shape)"""),
    ("code", """%%openmind train
model = openmind.train_or_load("room", X_cal, y_cal)
print(f"accuracy on the step-3 data: {float((model.predict(X_real) == y_real).mean()):.1%}")"""),
    ("md", """## 6. Meet reality again

A second real capture: the simulation it is compared with is now the pattern fitted on step 3's
capture, so the distance between simulation and reality shrinks (ebb and flow)."""),
    ("code", """%%openmind sense --source auto --timeout 5s
again = openmind.sense_or_simulate("temperature", duration="12s" if board.virtual else "10min", rate=rate)
first, second = (s.calibration.get("distance_before") for s in (real, again))
if first is not None and second is not None:
    print(f"simulation-to-reality distance: {first:.3g} before the first recalibration, "
          f"{second:.3g} now ({'shrinks' if second < first else 'does not shrink'})")
else:
    print(f"no real capture ({again.source}): nothing to calibrate against")"""),
    ("code", "%openmind log -n 8"),
]

STATION = """import http.server, functools, sqlite3, tempfile, threading
from pathlib import Path
import numpy as np

# A weather station made on the spot (no download): its readings as a CSV file served over HTTP
# by Python's own http.server on 127.0.0.1 (it answers If-Modified-Since with 304), and a SQLite
# archive of later readings. Seeded, so every run sees the same data.
station = Path(tempfile.mkdtemp(prefix="station-"))
rng = np.random.default_rng(3)

def readings(n, shift=0.0):
    y = rng.integers(0, 2, size=n)  # 1: rain within the hour
    X = rng.normal(size=(n, 4)) + 1.5 * y[:, None] + shift
    return X, y

X, y = readings(600)
rows = "".join(f"{a:.4f},{b:.4f},{c:.4f},{d:.4f},{t}\\n" for (a, b, c, d), t in zip(X, y))
(station / "readings.csv").write_text("pressure,humidity,wind,cloud,rain\\n" + rows)

with sqlite3.connect(station / "archive.db") as db:
    db.execute("CREATE TABLE readings (pressure REAL, humidity REAL, wind REAL, cloud REAL, rain INTEGER)")
    Xa, ya = readings(300)
    db.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?)",
                   [(*map(float, r), int(t)) for r, t in zip(Xa, ya)])

handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(station))
handler.log_message = lambda *args: None
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_address[1]}/readings.csv"
url"""

INGEST = [
    ("md", """# Ingest, train, validate, monitor

The colony's **ingestor** pulls data from where it lives: a file or a glob, an HTTP(S) API, a SQL
database. It keeps the last good copy in muscle memory, so when the source is unreachable the
notebook goes on with that copy, and says how old it is. Its siblings then train on the data,
validate the model and watch the stream for drift."""),
    ("code", """%load_ext openmind.jupyter
import openmind"""),
    ("code", STATION),
    ("md", """## 1. Ingest over HTTP

The first call downloads the table (`full_train/HARDCODE`: read and parsed here). It comes back
as a DataFrame that carries its route, and is kept in memory by its content."""),
    ("code", """%%openmind ingest
table = openmind.ingest(url, name="readings")
print(table.shape, table.route.pathway, table.route.decision)"""),
    ("md", """Asking again sends a conditional request: the server answers `304 Not Modified`, nothing
is downloaded, and the copy in memory is the answer (`muscle_memory/CACHED`, not degraded)."""),
    ("code", """%%openmind ingest
table = openmind.ingest(url, name="readings")
print(table.route.decision, "-", table.route.reason)"""),
    ("md", """## 2. Train on it"""),
    ("code", """%%openmind train
features = ["pressure", "humidity", "wind", "cloud"]
model = openmind.train_or_load("rain", table[features].to_numpy(), table["rain"].to_numpy())
model.route.pathway, model.route.decision"""),
    ("md", """## 3. Validate on the archive

A SQL query against the station's SQLite archive (any SQLAlchemy URL works the same way, e.g.
`postgresql+psycopg://user@host/db`; passwords never reach the journal or the cards)."""),
    ("code", """%%openmind validate
archive = openmind.ingest(f"sqlite:///{station}/archive.db",
                          query="SELECT pressure, humidity, wind, cloud, rain FROM readings")
check = openmind.validate("rain", archive[features].to_numpy(), archive["rain"].to_numpy())
print(f"accuracy on {len(archive)} archived readings: {check.accuracy:.1%} ({check.verdict})")"""),
    ("md", """## 4. Monitor the live stream

New readings whose pressure sensor has drifted: the monitor compares them with the training data
and raises an alert."""),
    ("code", """%%openmind monitor
X_new, y_new = readings(400, shift=np.array([2.5, 0, 0, 0]))
stream = np.vstack([table[features].to_numpy()[:200], X_new])
watch = openmind.monitor("rain", stream, reference=table[features].to_numpy(), action="alert")
print(watch.state, "- first drift at reading", watch.first_drift)"""),
    ("md", """## 5. The station goes offline

The server stops. The ingestor serves the last good copy, marked degraded with its age;
`--max-age` bounds how old a copy may be (`--fallback none` would raise instead)."""),
    ("code", """server.shutdown(); server.server_close()"""),
    ("code", """%%openmind ingest --max-age 1d --timeout 5s
table = openmind.ingest(url, name="readings")
print(table.shape, "-", table.route.degraded)"""),
    ("md", """## What is remembered

Memory cells are plain calls: `openmind.memories()` lists what is kept, `openmind.recall(name)`
brings one back, `openmind.forget(name)` removes it. The sidebar and `openmind memory ls` show the
same list."""),
    ("code", """for memory in openmind.memories():
    if memory.kind in ("model", "ingest"):
        print(memory)
print(openmind.recall("readings").shape)"""),
    ("code", "%openmind log -n 8"),
]


def build(cells: list[tuple[str, str]]) -> nbf.NotebookNode:
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, src) in enumerate(cells):
        cell = nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src)
        cell["id"] = f"c{i:02d}"  # stable ids: clean diffs
        nb.cells.append(cell)
    return nb


def main() -> None:
    HERE.mkdir(exist_ok=True)
    nbf.write(build(QUICKSTART), HERE / "quickstart.ipynb")
    nbf.write(build(EBB), HERE / "ebb_and_flow.ipynb")
    nbf.write(build(INGEST), HERE / "ingest.ipynb")


if __name__ == "__main__":
    main()
