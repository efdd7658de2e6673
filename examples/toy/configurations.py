"""The toy pipeline's configurations: the model, the named student configurations, and the settings.

Everything a run is parameterised by; ``pipeline.py`` turns it into commands. Settings default to the
demo's; environment variables named like the fields (upper case, e.g. ``STUDENT_UPDATES=250``) override them.
"""
import glob
import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Dict, List

from balkd_fairseq.synth.plan import NAMES_SCRIPTS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# One model size for teachers and students (the method's setting).
MODEL = ["--arch", "roberta_base", "--encoder-layers", "2", "--encoder-embed-dim", "96", "--encoder-ffn-embed-dim", "192",
         "--encoder-attention-heads", "4", "--max-positions", "64", "--dropout", "0.1"]

# Named student configurations. "{teachers}" is replaced by the run's teachers.json, "{teachers_init}" by the
# teachers.json of teachers started from the HL-balanced student (--init-from), "{teachers_oracle}" by the run's
# teachers with oracle teachers for the low-resource languages (oracle_teachers.py), "{hl_balanced}" by the
# HL-balanced student.
CONFIGS: Dict[str, List[str]] = {
    "HL": ["--balance", "none", "--criterion", "masked_lm"],
    "HL-balanced": ["--balance", "subsample", "--criterion", "masked_lm"],
    "Ours": ["--balance", "subsample", "--criterion", "multi_teacher_distill", "--teachers", "{teachers}"],
    # session 11: hard labels on the temperature-sampled data (size**0.3), a candidate fallback teacher
    "HL-temperature": ["--balance", "temperature", "--criterion", "masked_lm"],
    # levers of the student (issue: beyond the paper); each is one documented option
    "Ours+hard0.3": ["--balance", "subsample", "--criterion", "multi_teacher_distill", "--teachers", "{teachers}",
                     "--hard-label-weight", "0.3"],
    "Ours+T2": ["--balance", "subsample", "--criterion", "multi_teacher_distill", "--teachers", "{teachers}",
                "--temperature", "2"],
    "Ours+per-epoch": ["--balance", "subsample", "--balance-draw", "per_epoch", "--criterion", "multi_teacher_distill",
                       "--teachers", "{teachers}"],
    "Ours+temperature": ["--balance", "temperature", "--criterion", "multi_teacher_distill", "--teachers", "{teachers}"],
    "Ours+init": ["--balance", "subsample", "--criterion", "multi_teacher_distill", "--teachers", "{teachers_init}"],
    "Ours+fallback": ["--balance", "subsample", "--criterion", "multi_teacher_distill", "--teachers", "{teachers}",
                      "--teacher-fallback", "{hl_balanced}"],
    # the two levers that helped where the other did not (screening, examples/toy/RESULTS.md): the fallback
    # teacher on the diverse preset's low-resource languages, hard labels on the shared preset's zero-shot
    "Ours+fallback+hard0.3": ["--balance", "subsample", "--criterion", "multi_teacher_distill", "--teachers",
                              "{teachers}", "--teacher-fallback", "{hl_balanced}", "--hard-label-weight", "0.3"],
    # session 7: the lever with the best zero-shot transfer in screening (teachers continued from the balanced
    # student) with the two finalists' flags; the fallback rule then compares each continued teacher with
    # the balanced student it started from
    "Ours+init+fallback": ["--balance", "subsample", "--criterion", "multi_teacher_distill", "--teachers",
                           "{teachers_init}", "--teacher-fallback", "{hl_balanced}"],
    "Ours+init+fallback+hard0.3": ["--balance", "subsample", "--criterion", "multi_teacher_distill", "--teachers",
                                   "{teachers_init}", "--teacher-fallback", "{hl_balanced}",
                                   "--hard-label-weight", "0.3"],
    # session 8: a born-again fallback. The Ours+fallback student (better than HL-balanced in the diverse preset's
    # low-resource MLM-PPL) is the fallback of a second student, which the rule compares with each own teacher
    "Ours+fallback2": ["--balance", "subsample", "--criterion", "multi_teacher_distill", "--teachers", "{teachers}",
                       "--teacher-fallback", "{ours_fallback}"],
    # session 10, aimed at the diverse preset's low-resource probing: more hard labels, a sharper teacher and
    # student (T < 1), twice the masked positions (each one a soft label) per sentence, and the student
    # drawing its sentences by size**0.3 (more of the teachers' languages' text, fewer repeats of the small ones)
    "Ours+fallback+hard0.5": ["--balance", "subsample", "--criterion", "multi_teacher_distill", "--teachers",
                              "{teachers}", "--teacher-fallback", "{hl_balanced}", "--hard-label-weight", "0.5"],
    "Ours+fallback+hard0.3+T0.5": ["--balance", "subsample", "--criterion", "multi_teacher_distill", "--teachers",
                                   "{teachers}", "--teacher-fallback", "{hl_balanced}", "--hard-label-weight", "0.3",
                                   "--temperature", "0.5"],
    "Ours+fallback+hard0.3+mask0.3": ["--balance", "subsample", "--criterion", "multi_teacher_distill", "--teachers",
                                      "{teachers}", "--teacher-fallback", "{hl_balanced}", "--hard-label-weight", "0.3",
                                      "--mask-prob", "0.3"],
    "Ours+fallback+hard0.3+temperature": ["--balance", "temperature", "--criterion", "multi_teacher_distill",
                                          "--teachers", "{teachers}", "--teacher-fallback", "{hl_balanced}",
                                          "--hard-label-weight", "0.3"],
    # session 11, a diagnostic and not a lever: the finalist with the low-resource languages' teachers trained on
    # ten times their text (oracle_teachers.py). Does a better teacher make the student beat HL-balanced there?
    "Ours+fallback+hard0.3+oracle": ["--balance", "subsample", "--criterion", "multi_teacher_distill", "--teachers",
                                     "{teachers_oracle}", "--teacher-fallback", "{hl_balanced}",
                                     "--hard-label-weight", "0.3"],
    # the paper's recipe from an offline teacher cache (balkd-cache-teachers, top-32 soft labels): what the
    # cache changes in cost, and that it changes nothing else beyond the top-k truncation
    "Ours+cache": ["--balance", "subsample", "--criterion", "multi_teacher_distill", "--teachers", "{teachers}",
                   "--teacher-cache", "{cache}", "--topk", "32"],
    # the same cache, its top-32 keeping their probabilities and the rest spread evenly (--topk-tail uniform)
    "Ours+cache+tail": ["--balance", "subsample", "--criterion", "multi_teacher_distill", "--teachers", "{teachers}",
                        "--teacher-cache", "{cache}", "--topk", "32", "--topk-tail", "uniform"],
}
CACHE_TOPK = "32"
TEACHER_SETS = ("{teachers}", "{teachers_init}", "{teachers_oracle}")  # a configuration with one of these distills
# the probes' control: the students' architecture untrained (balkd-probe --random-init), evaluated beside the models
# whenever HL-balanced (whose checkpoint gives the architecture) is; a probe score it matches is not pretraining's
CONTROL = "Random-init"
PAPER_CONFIGS = ["HL", "HL-balanced", "Ours"]
PRESET_GROUPS = {  # --low / --high / --single of the report, per preset
    "shared": {"low": "tr eu", "high": "es", "single": "de"},
    "diverse": {"low": "hi el", "high": "ru", "single": "de"},
}


def with_control(configs: List[str]) -> List[str]:
    """The models a run of ``configs`` evaluates: the probes' control comes with HL-balanced."""
    return [*configs, CONTROL] if "HL-balanced" in configs else list(configs)


def distills(name: str) -> bool:
    """Whether a named configuration learns from teachers (one of TEACHER_SETS among its flags)."""
    return bool(set(TEACHER_SETS) & set(CONFIGS[name]))


@dataclass
class Settings:
    out: str = os.path.join(REPO, "outputs", "toy")
    data_seed: int = 1
    teacher_updates: int = 500
    student_updates: int = 500
    teacher_valid_every: int = 25
    vocab: int = 2000
    high_size: int = 20000
    low_size: int = 500
    probe_train: int = 1000
    probe_test: int = 500
    eval_lines: int = 100
    threads: int = 2
    # the students validate (for the logs and TensorBoard) every this many epochs; training is seeded per
    # update, so the trained student is the same however often (or, STUDENT_VALIDATION=0 in sweeps, never)
    student_validation: bool = True
    student_valid_every: int = 10
    # independent steps (teacher shards, students, evaluations) run side by side in this many lanes of
    # THREADS // LANES threads each: two one-thread processes get more out of 2 cores than one with two
    # threads (measured: 1.5x) at this model size. 2 for the demo, 1 (one step at a time) for sweeps.
    lanes: int = 1
    # > 0: the sweep also probes every run with balkd-probe --train-sentences N (few-shot probing) into
    # <run>/results-probeN/, beside the whole-split results it keeps, and reports those
    probe_train_sentences: int = 0
    # the probes' word features (balkd-probe --word-pooling); other than "first", the sweep probes every run again
    # into <run>/results[-probeN]-<pooling>/ and reports those
    probe_pooling: str = "first"
    # how the benchmark's non-Latin-script languages write names (balkd-synth --names-script): "own" (the presets'
    # benchmark) or "latin" (session 16's diagnostic: names that link the scripts)
    names_script: str = "own"


BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False,
            "": False}
# the settings a finished step's results depend on: a sweep refuses to reuse its OUT when one of them changed
# (threads, lanes, validation frequency and the extra probe variants change no trained model or score)
RESULT_SETTINGS = ("teacher_updates", "student_updates", "teacher_valid_every", "vocab", "high_size", "low_size",
                   "probe_train", "probe_test", "eval_lines", "names_script")


def settings_from_env(defaults: Settings) -> Settings:
    values = {}
    for f in fields(Settings):
        raw = os.environ.get(f.name.upper())
        if raw is not None:
            default = getattr(defaults, f.name)
            try:
                values[f.name] = _boolean(raw) if isinstance(default, bool) else type(default)(raw)
            except ValueError:
                raise SystemExit(f"pipeline.py: error: {f.name.upper()}={raw!r} is not a{'n' if type(default) is int else ''} "
                                 f"{type(default).__name__}") from None
    settings = Settings(**{**asdict(defaults), **values})
    check_names_script(settings)  # before the demo clears its OUT
    return settings


def check_names_script(s: Settings) -> None:
    if s.names_script not in NAMES_SCRIPTS:
        raise SystemExit(f"pipeline.py: error: NAMES_SCRIPT={s.names_script!r} is not one of {', '.join(NAMES_SCRIPTS)}")


def _boolean(raw: str) -> bool:
    if raw.strip().lower() not in BOOLEANS:
        raise ValueError(raw)
    return BOOLEANS[raw.strip().lower()]


def check_settings(s: Settings) -> None:
    """A sweep's OUT keeps the settings its steps were made with (OUT/settings.json); finished steps are reused
    only under the same ones."""
    check_names_script(s)
    path = os.path.join(s.out, "settings.json")
    now = {name: getattr(s, name) for name in RESULT_SETTINGS}
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                recorded = json.load(f)
        except (OSError, ValueError) as err:
            raise SystemExit(f"pipeline.py: error: {path} cannot be read ({err}): use another --out") from None
        if not isinstance(recorded, dict):
            raise SystemExit(f"pipeline.py: error: {path} is not a JSON object of settings: use another --out")
        defaults = asdict(Settings())  # a setting added since OUT was made was at its default then
        changed = [f"{name.upper()} {recorded.get(name, defaults[name])} -> {value}" for name, value in now.items()
                   if recorded.get(name, defaults[name]) != value]
        if changed and glob.glob(os.path.join(s.out, "**", ".done"), recursive=True):  # nothing finished: no harm
            raise SystemExit(f"pipeline.py: error: {s.out} was made with other settings ({'; '.join(changed)}) and its "
                             "finished steps would be reused: use another --out")
    os.makedirs(s.out, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(now, f, indent=1)


def common_flags(seed: int) -> List[str]:
    return ["--tokens-per-sample", "64", "--batch-size", "32", "--required-batch-size-multiple", "1",
            "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--weight-decay", "0.01", "--lr", "0.002",
            "--lr-scheduler", "polynomial_decay", "--cpu", "--seed", str(seed), "--num-workers", "0",
            "--log-format", "simple", "--log-interval", "25", "--no-epoch-checkpoints"]


NO_VALIDATION = ["--disable-validation", "--save-interval", "1000000"]  # the last checkpoint is still saved at the end


def schedule(updates: int) -> List[str]:
    return ["--warmup-updates", str(updates // 10), "--total-num-update", str(updates), "--max-update", str(updates)]
