"""A differential corpus of notebook patterns for the cell pathway: each pattern is run, changed
(or not) and run again after a fresh Run All; the oracle is a fresh re-run (tests/cell_oracle.py).
A hit must equal it (names, what they share, stdout, files, random state, environment, the user's
modules); a change must miss; what openmind cannot follow is uncacheable, with the reason."""

from __future__ import annotations

import pytest
from cell_oracle import Pattern, check

NP = "import numpy as np\n"
PD = "import numpy as np\nimport pandas as pd\ndf = pd.DataFrame({'a': [1.0, 2.0, None, 4.0], 'b': list('wxyz')})\n"
SK = NP + "from sklearn.datasets import load_iris\nX, y = load_iris(return_X_y=True)\n"
TORCH = ("import torch\ntorch.manual_seed(0)\nnet = torch.nn.Linear(3, 1)\n"
         "opt = torch.optim.SGD(net.parameters(), lr=0.1)\nX = torch.randn(16, 3)\nY = X.sum(1, keepdim=True)\n")
STEP = "loss = ((net(X) - Y) ** 2).mean()\nopt.zero_grad()\nloss.backward()\nopt.step()\nprint(round(float(loss), 5))"
SETTINGS = {"settings.py": "LR = 0.1\nMODE = 'slow'\n"}
HELPERS = {"helpers.py": "LOG = []\ndef f(x):\n    return x * 2\ndef record(v):\n    LOG.append(v)\n    return len(LOG)\n"}
PACKAGE = {"mylib/__init__.py": "from .impl import fit\n", "mylib/impl.py": "def fit(x):\n    return x + 1\n"}
EDIT_HELPERS = "src = open('mods/helpers.py').read()\nopen('mods/helpers.py', 'w').write(src.replace('x * 2', 'x * 20'))\n"
EDIT_IMPL = "open('mods/mylib/impl.py', 'w').write('def fit(x):\\n    return x + 100\\n')\n"
RELOAD = "import importlib, sys\n"

PATTERNS = [
    # --- the cases
    Pattern("sklearn fit in place (model from an earlier cell)",
            SK + "from sklearn.linear_model import LogisticRegression\nclf = LogisticRegression(max_iter=300)",
            "clf.fit(X, y)\nacc = clf.score(X, y)\nprint(round(acc, 4))"),
    Pattern("array slice assignment", NP + "x = np.zeros(5)", "x[:] = np.arange(5) * 2\ntotal = x.sum()"),
    Pattern("pandas new column", PD, "df['c'] = df['a'] * 2\nprint(df['c'].sum())"),
    Pattern("list append", "lst = [1, 2]", "lst.append(len(lst))"),
    Pattern("torch optimiser step on an earlier cell's model", TORCH, STEP,
            probe="opt.param_groups[0]['params'][0] is net.weight and bool((net(X) != 0).all())"),
    Pattern("np.loadtxt of a file changed on disk", NP, "arr = np.loadtxt('data.txt')\ntotal = arr.sum()",
            change="open('data.txt', 'w').write('1 2 3\\n9 9 9\\n')", files={"data.txt": "1 2 3\n4 5 6\n"},
            expect="miss"),
    Pattern("pd.read_csv of a file changed on disk", PD, "t = pd.read_csv('t.csv')\nm = t['v'].mean()",
            change="open('t.csv', 'w').write('v\\n1\\n5\\n')", files={"t.csv": "v\n1\n2\n"}, expect="miss"),
    Pattern("user module attribute set at run time", "import settings\nsettings.LR = 0.1", "lr2 = settings.LR * 2",
            setup2="import settings\nsettings.LR = 0.01", modules=SETTINGS, expect="miss"),
    Pattern("user module edited on disk, not reloaded (runs the loaded code)", "import helpers", "v = helpers.f(3)",
            change=EDIT_HELPERS, modules=HELPERS, restart=False),
    Pattern("user module edited on disk, kernel restarted", "import helpers", "v = helpers.f(3)",
            change=EDIT_HELPERS, modules=HELPERS, expect="miss"),
    Pattern("user module edited on disk and reloaded", "import helpers\nimport importlib\nimportlib.reload(helpers)",
            "v = helpers.f(3)", change=EDIT_HELPERS, modules=HELPERS, expect="miss", restart=False),
    Pattern("package submodule edited, package reloaded",
            "import importlib, mylib, mylib.impl\nimportlib.reload(mylib.impl)\nimportlib.reload(mylib)",
            "out = mylib.fit(1)", change=EDIT_IMPL, modules=PACKAGE, expect="miss", restart=False),
    Pattern("package submodule edited, only the submodule reloaded",
            "import importlib, mylib, mylib.impl\nimportlib.reload(mylib.impl)",
            "out = mylib.fit(1)", change=EDIT_IMPL, modules=PACKAGE, restart=False),
    Pattern("name bound only in an if", "df = [1, 2, 3]", "if 'df' not in dir():\n    df = [0]\ntotal = sum(df)",
            setup2="df = [4, 5]", expect="miss"),
    Pattern("name bound only in a try", "data = [1, 2]", "try:\n    data\nexcept NameError:\n    data = []\nn = len(data)",
            setup2="data = [1, 2, 3]", expect="miss"),
    Pattern("global numpy random state", NP + "np.random.seed(1)", "r = np.random.rand()",
            setup2=NP + "np.random.seed(2)", expect="miss"),
    Pattern("eval reads a name", "a = 1", "v = eval('a + 1')", expect="uncacheable"),
    Pattern("globals() reads a name", "a = 1", "v = globals()['a'] * 3", expect="uncacheable"),
    Pattern("a notebook function reading globals()", "a = 2\ndef get():\n    return globals()['a']", "v = get()",
            expect="uncacheable"),
    # --- what data scientists' notebooks do
    Pattern("pandas dropna in place", PD, "df.dropna(inplace=True)\nn = len(df)"),
    Pattern("pandas .loc assignment", PD, "df.loc[0, 'a'] = 99.0\ntop = df['a'].max()"),
    Pattern("pandas read changed in an earlier cell", PD, "s = df['a'].sum()",
            setup2=PD + "df.loc[1, 'a'] = 7.0", expect="miss"),
    Pattern("sklearn pipeline fit and predict",
            SK + "from sklearn.pipeline import make_pipeline\nfrom sklearn.preprocessing import StandardScaler\n"
                 "from sklearn.linear_model import LogisticRegression\npipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))",
            "pipe.fit(X, y)\npreds = pipe.predict(X)"),
    Pattern("sklearn model made in the cell", SK + "from sklearn.linear_model import Ridge", "m = Ridge(alpha=0.5).fit(X, y)\nscore = m.score(X, y)"),
    Pattern("scaler fit_transform in place", SK + "from sklearn.preprocessing import StandardScaler\nscaler = StandardScaler()",
            "Xs = scaler.fit_transform(X)"),
    Pattern("sklearn hyper-parameter changed in an earlier cell", SK + "from sklearn.linear_model import Ridge\nalpha = 1.0",
            "m = Ridge(alpha=alpha).fit(X, y)", setup2=SK + "from sklearn.linear_model import Ridge\nalpha = 2.0", expect="miss"),
    Pattern("torch training loop of several steps", TORCH, "for _ in range(3):\n" + "\n".join("    " + ln for ln in STEP.splitlines()),
            probe="opt.param_groups[0]['params'][1] is net.bias"),
    Pattern("torch Adam steps (state keyed by parameter)", TORCH.replace("optim.SGD", "optim.Adam"),
            "for _ in range(2):\n" + "\n".join("    " + ln for ln in STEP.splitlines()),
            probe="list(opt.state)[0] is net.weight"),
    Pattern("torch Adam after an earlier step, run again", TORCH.replace("optim.SGD", "optim.Adam") + STEP, STEP),
    Pattern("torch model defined and seeded in the cell",
            "import torch", "torch.manual_seed(0)\nmodel = torch.nn.Linear(2, 1)\nout = model(torch.ones(2)).detach()"),
    Pattern("torch global random state", "import torch\ntorch.manual_seed(1)", "t = torch.rand(3)",
            setup2="import torch\ntorch.manual_seed(2)", expect="miss"),
    Pattern("a cell that seeds numpy itself is a hit in any state", NP, "np.random.seed(0)\nnoise = np.random.rand(3)"),
    Pattern("random module", "import random\nrandom.seed(3)\nitems = list(range(10))", "pick = random.choice(items)\nprint(pick)"),
    Pattern("file written by the cell is written back", PD, "df.to_csv('out.csv')\nprint('saved')",
            change="import os\nos.remove('out.csv')"),
    Pattern("np.save and load in one cell", NP + "x = np.arange(4.0)", "np.save('x.npy', x * 3)\ny = np.load('x.npy')",
            change="import os\nos.remove('x.npy')"),
    Pattern("files in a folder the cell makes", NP, "import os\nos.makedirs('res/a', exist_ok=True)\nnp.savetxt('res/a/v.txt', np.ones(3))",
            change="import shutil\nshutil.rmtree('res')"),
    Pattern("appending to a log (its content before is an input)", "",
            "with open('log.txt', 'a') as f:\n    f.write('run\\n')\nn = open('log.txt').read().count('run')",
            change="open('log.txt', 'w').write('')", files={"log.txt": ""}),
    Pattern("appending to a log twice in a row misses", "",
            "with open('log.txt', 'a') as f:\n    f.write('run\\n')", files={"log.txt": ""}, expect="miss"),
    Pattern("environment variable read", "import os", "mode = os.environ.get('OMTEST_MODE', 'a')",
            change="import os\nos.environ['OMTEST_MODE'] = 'b'", expect="miss"),
    Pattern("environment variable set by the cell", "import os", "os.environ['OMTEST_OUT'] = '1'\nv = 1",
            change="import os\nos.environ.pop('OMTEST_OUT', None)"),
    Pattern("closure over an earlier cell's value", "def make(k):\n    def f(x):\n        return x * k\n    return f\nscale = make(3)",
            "v = scale(5)", setup2="def make(k):\n    def f(x):\n        return x * k\n    return f\nscale = make(4)", expect="miss"),
    Pattern("class defined in the cell", "", "class P:\n    def __init__(self, v):\n        self.v = v\np = P(3)\nw = p.v * 2",
            probe="type(p) is P"),
    Pattern("class attribute set by the cell", "class Config:\n    lr = 1.0", "Config.lr = 0.1\nv = Config.lr * 2",
            expect="uncacheable"),
    Pattern("class from an earlier cell, method edited", "class Q:\n    def val(self):\n        return 1\nq = Q()",
            "r = q.val()", setup2="class Q:\n    def val(self):\n        return 2\nq = Q()", expect="miss"),
    Pattern("generator made in the cell cannot be kept", "", "gen = (i * i for i in range(5))\nfirst = next(gen)",
            expect="uncacheable"),
    Pattern("iterator from an earlier cell advanced", "it = iter([1, 2, 3])", "a = next(it)", expect="any"),
    Pattern("Counter updated in place", "from collections import Counter\ncounts = Counter('abca')",
            "counts.update('zz')\ntop = counts.most_common(1)"),
    Pattern("deque appended", "from collections import deque\nq = deque([1, 2], maxlen=3)", "q.append(3)\nq.append(4)"),
    Pattern("generator function defined and drained in the cell", "n = 4",
            "def squares(k):\n    for i in range(k):\n        yield i * i\nvals = list(squares(n))",
            setup2="n = 5", expect="miss"),
    Pattern("dict update in place", "cfg = {'lr': 1}", "cfg.update(lr=0.1, epochs=3)"),
    Pattern("a value changed through a container", "hist = []\nstate = {'hist': hist}", "state['hist'].append(1)",
            probe="state['hist'] is hist"),
    Pattern("an item replaced, not changed, in a list that shares it", NP + "a = np.ones(3)\nlst = [a, np.ones(2)]",
            "lst[0] = np.zeros(3)\nlst[1] += 1", probe="lst[0] is a"),
    Pattern("an attribute replaced on one object, changed in place on another",
            NP + "class Box:\n    pass\nw = np.ones(2)\nb = Box()\nb.w = w\nb.v = np.ones(2)",
            "b.w = w * 3\nb.v *= 2", probe="b.w is w"),
    Pattern("new name is an earlier cell's object", NP + "x = np.ones(3)", "y = x", probe="y is x"),
    Pattern("two new names share one list", "", "a = b = []\na.append(1)", probe="a is b"),
    Pattern("deleting an earlier cell's name", "tmp = 5", "keep = tmp + 1\ndel tmp"),
    Pattern("notebook helper edited", "def h(x):\n    return x + 1", "v = h(1)", setup2="def h(x):\n    return x + 2",
            expect="miss"),
    Pattern("notebook helper appends to a global", "hist = []\ndef log(v):\n    hist.append(v)", "log(5)\nn = 1"),
    Pattern("module function changes module state", "import helpers", "k = helpers.record(3)", modules=HELPERS),
    Pattern("module attribute set by the cell", "import settings", "settings.MODE = 'fast'\nm = settings.MODE",
            modules=SETTINGS),
    Pattern("folder listing", "import os", "names = sorted(os.listdir('data'))",
            change="open('data/c.txt', 'w').write('c')", files={"data/a.txt": "a", "data/b.txt": "b"}, expect="miss"),
    Pattern("glob over csv parts", PD + "import glob",
            "frames = [pd.read_csv(p) for p in sorted(glob.glob('parts/*.csv'))]\ntotal = sum(f['v'].sum() for f in frames)",
            change="open('parts/2.csv', 'w').write('v\\n10\\n')", files={"parts/1.csv": "v\n1\n", "parts/2.csv": "v\n2\n"},
            expect="miss"),
    Pattern("a subprocess", "import subprocess, sys",
            "out = subprocess.run([sys.executable, '-c', 'print(1)'], capture_output=True).stdout",
            expect="uncacheable"),
    Pattern("deleting a file it did not make", "import os", "os.remove('old.txt')\ndone = True",
            change="open('old.txt', 'w').write('x')", files={"old.txt": "x"}, expect="uncacheable"),
    Pattern("a temporary folder made and removed", NP + "import os, tempfile\nx = np.arange(3)",
            "with tempfile.TemporaryDirectory() as d:\n    np.save(os.path.join(d, 'a.npy'), x)\n    z = np.load(os.path.join(d, 'a.npy')).sum()\ndel d"),
    Pattern("print only", "a = [1, 2, 3]", "print(sum(a))"),
    Pattern("last expression shown", PD, "df.describe()"),
    Pattern("augmented assignment on an input array", NP + "x = np.ones(3)", "x += 1", probe="x.sum()"),
    Pattern("parquet read by pyarrow (C++ opens the file, no audit event)", PD + "pd.DataFrame({'v': [1, 2]}).to_parquet('t.parquet')",
            "t = pd.read_parquet('t.parquet')\nm = float(t['v'].mean())",
            change="import pandas as pd\npd.DataFrame({'v': [1, 5]}).to_parquet('t2.parquet')\nimport os\nos.replace('t2.parquet', 't.parquet')",
            setup2=PD, expect="miss"),
    Pattern("parquet folder named by an earlier cell's variable", PD + "import os\nos.makedirs('ds', exist_ok=True)\n"
            "pd.DataFrame({'v': [1, 2]}).to_parquet('ds/p0.parquet')\nwhere = 'ds'",
            "t = pd.read_parquet(where)\nn = len(t)",
            change="import pandas as pd\npd.DataFrame({'v': [3]}).to_parquet('ds/p1.parquet')",
            setup2=PD + "where = 'ds'", expect="miss"),
    Pattern("json config file read", "import json", "cfg = json.load(open('cfg.json'))\nlr = cfg['lr']",
            change="open('cfg.json', 'w').write('{\"lr\": 0.5}')", files={"cfg.json": '{"lr": 0.1}'}, expect="miss"),
    Pattern("unchanged json config file", "import json", "cfg = json.load(open('cfg.json'))",
            change="import os\nos.utime('cfg.json', (1, 1))", files={"cfg.json": '{"lr": 0.1}'}),
]


def test_the_corpus_has_at_least_40_patterns_with_unique_names():
    assert len(PATTERNS) >= 40 and len({p.name for p in PATTERNS}) == len(PATTERNS)


@pytest.mark.parametrize("pattern", PATTERNS, ids=[p.name for p in PATTERNS])
def test_a_hit_equals_a_fresh_re_run_and_a_change_misses(pattern, tmp_path, monkeypatch):
    root = tmp_path / "nb"
    root.mkdir()
    check(pattern, root, monkeypatch)
