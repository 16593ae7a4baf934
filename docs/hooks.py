"""Build-time steps of the documentation site (mkdocs hooks; see docs/mkdocs.yml).

* **Tutorials, executed**: each ``tutorials/NN_*.py`` runs cell by cell in its own process
  (``docs/execute_tutorial.py``) and becomes ``tutorials/NN_*.md`` with what it printed and the
  figures it saved.  A tutorial that fails fails the build.
* **Screens**: ``<!-- screen: report adamw -->`` in a page becomes the output of
  ``python -m memless report adamw`` at 80 columns, run now by this version.
* **The command-line reference**: ``<!-- cli-reference -->`` becomes every command's ``--help``.
* **Outputs**: a ```python block followed by ``<!-- output -->`` runs (on its own, in a fresh
  interpreter) and what it prints is shown under it.
* **Includes**: ``<!-- include: PATH -->`` (from the repository's root) inserts that file.
* **Glossary words**: the definitions in ``docs/abbreviations.md`` are appended to every page, so
  those words show their definition on hover wherever they appear in text.
* **Docstrings**: Sphinx-style roles (``:class:`~memless.Analysis```) show as code.
"""
import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile

from mkdocs.structure.files import File

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTORIALS = os.path.join(ROOT, "tutorials")
#: generous guard against a hung tutorial or command (the slowest tutorial takes about 40 s)
SECONDS = 900


def _environment():
    env = dict(os.environ, COLUMNS="80", MPLBACKEND="Agg", PYTHONHASHSEED="0", NO_COLOR="1")
    env["MEMLESS_CACHE_DIR"] = _cache_dir()      # kept studies of this build, not the reader's home
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


_CACHE = []


def _cache_dir():
    if not _CACHE:
        _CACHE.append(tempfile.mkdtemp(prefix="memless-docs-cache-"))
    return _CACHE[0]


# ----------------------------------------------------------------------------
# Tutorials, executed
# ----------------------------------------------------------------------------


def _tutorial_scripts():
    return sorted(name for name in os.listdir(TUTORIALS) if re.match(r"\d\d_.*\.py$", name))


def _execute(script, out):
    """Run one tutorial into a folder of its own (two run at once: each must see only its own figures)."""
    own = os.path.join(out, script[:-3])
    os.makedirs(own)
    run = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "execute_tutorial.py"),
                          os.path.join(TUTORIALS, script), own], cwd=own, env=_environment(),
                         capture_output=True, text=True, timeout=SECONDS)
    if run.returncode != 0:
        raise RuntimeError(f"tutorial {script} failed while building the documentation:\n{run.stderr[-4000:]}")


_FOLDERS: list = []          # temporary folders of this build, removed after it


def on_post_build(config):
    import shutil
    for folder in _FOLDERS + _CACHE:
        shutil.rmtree(folder, ignore_errors=True)
    _FOLDERS.clear()
    _CACHE.clear()


def on_files(files, config):
    out = tempfile.mkdtemp(prefix="memless-docs-tutorials-")
    _FOLDERS.append(out)
    scripts = _tutorial_scripts()
    # $MEMLESS_DOCS_TUTORIALS (names, comma-separated) executes only those: the test suite's build, whose
    # tutorials are run by tests/test_tutorials.py already; the others get a page saying so
    chosen = [name for name in os.environ.get("MEMLESS_DOCS_TUTORIALS", "").split(",") if name]
    executed = [s for s in scripts if not chosen or s[:-3] in chosen]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda s: _execute(s, out), executed))
    for script in sorted(set(scripts) - set(executed)):
        os.makedirs(os.path.join(out, script[:-3]))
        with open(os.path.join(out, script[:-3], script[:-3] + ".md"), "w", encoding="utf-8") as f:
            f.write(f"# {script[:-3]}\n\nThis build of the site did not execute this tutorial "
                    f"(`MEMLESS_DOCS_TUTORIALS` chose others); its script is `tutorials/{script}`.\n")
    for script in scripts:
        own = os.path.join(out, script[:-3])
        with open(os.path.join(own, script[:-3] + ".md"), encoding="utf-8") as f:
            files.append(File.generated(config, f"tutorials/{script[:-3]}.md", content=f.read()))
        figures = os.path.join(own, "figures")
        for figure in sorted(os.listdir(figures)) if os.path.isdir(figures) else []:
            with open(os.path.join(figures, figure), "rb") as f:
                files.append(File.generated(config, f"tutorials/figures/{figure}", content=f.read()))
    # the figures kept in the repository (README pictures, the experiments' full runs)
    for folder, target in (("tutorials/figures", "figures"), ("tutorials/experiments", "experiments")):
        for figure in sorted(os.listdir(os.path.join(ROOT, folder))):
            if figure.endswith(".png"):
                with open(os.path.join(ROOT, folder, figure), "rb") as f:
                    files.append(File.generated(config, f"{target}/{figure}", content=f.read()))
    return files


# ----------------------------------------------------------------------------
# Screens, the CLI reference and includes
# ----------------------------------------------------------------------------

SCREEN = re.compile(r"<!-- screen: (.+?) -->")
OUTPUT = re.compile(r"```python\n(.*?)```\n<!-- output -->", re.S)
INCLUDE = re.compile(r"<!-- include: (.+?) -->")


def screen(arguments: str) -> str:
    """What ``python -m memless ARGUMENTS`` prints at 80 columns, as a text block."""
    run = subprocess.run([sys.executable, "-m", "memless", *arguments.split()], env=_environment(),
                         capture_output=True, text=True, timeout=SECONDS, cwd=ROOT)
    if run.returncode != 0:
        raise RuntimeError(f"`python -m memless {arguments}` failed while building the documentation:\n"
                           f"{run.stderr[-3000:]}")
    return f"```text\n$ python -m memless {arguments}\n{run.stdout.rstrip()}\n```"


def cli_reference() -> str:
    sys.path.insert(0, ROOT)
    from memless.cli import build_parser
    parser = build_parser()
    parts = ["## python -m memless\n", "```text\n" + _help(parser) + "\n```\n"]
    for action in parser._subparsers._group_actions:           # the sub-commands, in their order
        for name, sub in action.choices.items():
            parts += [f"## {name}\n", "```text\n" + _help(sub) + "\n```\n"]
    return "\n".join(parts)


def _help(parser) -> str:
    os.environ["COLUMNS"] = "80"
    return parser.format_help().rstrip()


def output(code: str) -> str:
    """The block, then what it prints when run on its own."""
    run = subprocess.run([sys.executable, "-c", code], env=_environment(), capture_output=True, text=True,
                         timeout=SECONDS, cwd=ROOT)
    if run.returncode != 0:
        raise RuntimeError(f"a code block failed while building the documentation:\n{code}\n{run.stderr[-3000:]}")
    return f"```python\n{code}```\n\n```text\n{run.stdout.rstrip()}\n```"


def on_page_markdown(markdown, page, config, files):
    markdown = OUTPUT.sub(lambda m: output(m.group(1)), markdown)
    markdown = SCREEN.sub(lambda m: screen(m.group(1)), markdown)
    if "<!-- cli-reference -->" in markdown:
        markdown = markdown.replace("<!-- cli-reference -->", cli_reference())

    def include(match):
        with open(os.path.join(ROOT, match.group(1)), encoding="utf-8") as f:
            return f.read()

    markdown = INCLUDE.sub(include, markdown)
    if page.file.src_uri == "glossary.md":          # the page that defines the words
        return markdown
    with open(os.path.join(ROOT, "docs", "abbreviations.md"), encoding="utf-8") as f:
        return markdown + "\n\n" + f.read()


# ----------------------------------------------------------------------------
# Docstrings written for Sphinx
# ----------------------------------------------------------------------------

ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):<code>(~?)([\w.]+)</code>")
RAW_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`(~?)([\w.]+)`")   # inside code (types)


def _name(match):
    return match.group(2).rsplit(".", 1)[-1] if match.group(1) else match.group(2)


def on_page_content(html, page, config, files):
    html = ROLE.sub(lambda m: f"<code>{_name(m)}</code>", html)
    return RAW_ROLE.sub(_name, html).replace("``", "")
