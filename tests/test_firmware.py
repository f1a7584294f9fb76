"""The firmware core compiled on the host: C unit tests, sanitizers, fuzz replay, strict flags."""

from __future__ import annotations

import subprocess

from vdev_fixtures import BUILD, FIRMWARE, make


def test_c_unit_tests_parser_malformed_overlong_binary():
    out = make("test").stdout
    assert "0 failed" in out
    assert int(out.split(" checks")[0].split()[-1]) >= 70


def test_core_under_address_and_undefined_sanitizers():
    out = make("asan").stdout
    assert "0 failed" in out and "no crash" in out


def test_fuzz_entry_point_replays_corpus_and_random_inputs_with_gcc():
    make(str(BUILD.relative_to(FIRMWARE) / "fuzz-replay"))
    corpus = sorted(str(p) for p in (FIRMWARE / "fuzz" / "corpus").iterdir())
    assert corpus, "the fuzz corpus is empty"
    proc = subprocess.run([str(BUILD / "fuzz-replay"), "-n", "3000", *corpus],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(corpus)} corpus files" in proc.stdout


def test_strict_flags_reject_a_warning():
    """The build really is -Wall -Wextra -Werror -std=c99: an unused variable fails it."""
    src = "#include \"om_core.h\"\nint f(void) { int unused; return 0; }\n"
    proc = subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(FIRMWARE / "core"),
                           "-x", "c", "-c", "-o", "/dev/null", "-"], input=src, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "unused" in proc.stderr
    makefile = (FIRMWARE / "Makefile").read_text()
    assert "-std=c99 -Wall -Wextra -Werror -ffp-contract=off" in makefile


def test_core_makes_no_heap_or_board_calls():
    banned = ("malloc", "calloc", "realloc", "free(", "Serial", "analogRead", "printf(")
    for path in (FIRMWARE / "core").glob("*.c"):
        text = path.read_text()
        for word in banned:
            assert word not in text.replace("snprintf(", ""), f"{path.name} uses {word}"


def test_python_and_the_firmware_agree_on_the_device_limits():
    """One source each side: openmind.pathways.device's limits are om_core.h's #defines."""
    import re

    from openmind.pathways import device, learnlink

    header = (FIRMWARE / "core" / "om_core.h").read_text()
    defines = {k: v for k, v in re.findall(r"#define (OM_\w+) (\d+)", header)}
    assert int(defines["OM_MODEL_MAX"]) == device.MODEL_MAX_BYTES
    assert int(defines["OM_MAX_WIDTH"]) == device.MODEL_MAX_WIDTH
    assert int(defines["OM_MAX_LAYERS"]) == device.MODEL_MAX_LAYERS
    assert int(defines["OM_LINE_MAX"]) == device.MAX_LINE
    assert int(defines["OM_B64_MAX"]) == 4 * device.CHUNK_BYTES // 3
    assert int(defines["OM_PROTO"]) == learnlink.PROTO  # protocol 3 (learning) is learnlink.py's
