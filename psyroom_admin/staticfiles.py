"""Plotly's JavaScript served from the installed ``plotly`` wheel, never from a CDN.

``PlotlyFinder`` (in ``STATICFILES_FINDERS``) finds ``vendor/plotly/plotly.min.js`` in the wheel's ``package_data``,
so ``collectstatic`` copies exactly the version pinned in requirements.txt. Plotly injects its own stylesheet as an
inline ``<style>``, which the CSP refuses; a page that draws charts links ``static/vendor/plotly/plotly.css`` (the
same rules, written by ``plotly_css()`` from the installed plotly.min.js) with the id and class that tell plotly not
to inject (``plotly.js-style-global``, ``no-inline-styles``). plotly.js is MIT licensed.
"""

import re
from pathlib import Path

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PACKAGE_DATA = Path(plotly.__file__).resolve().parent / "package_data"
PREFIX = "vendor/plotly"
NAME = "plotly.min.js"


class PlotlyFinder(BaseFinder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.storage = FileSystemStorage(location=PACKAGE_DATA)
        self.storage.prefix = PREFIX  # collectstatic reads it, as it does FileSystemFinder's

    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        if path == f"{PREFIX}/{NAME}":
            found = str(PACKAGE_DATA / NAME)
            return [found] if find_all or kwargs.get("all") else found
        return []

    def list(self, ignore_patterns):
        yield NAME, self.storage


_RULES = re.compile(r"""I0e=\{(.*?)\};for\(bV in I0e\)""", re.S)
_PAIR = re.compile(r""""([^"]+)":(?:'([^']*)'|"([^"]*)")""")


def plotly_css() -> str:
    """The stylesheet plotly.min.js would inject, as a file (its selectors expanded as plotly expands them)."""
    source = (PACKAGE_DATA / NAME).read_text(encoding="utf-8")
    version = re.search(r"plotly\.js v([\d.]+)", source)
    match = _RULES.search(source)
    if match is None:
        raise RuntimeError("plotly.min.js has no stylesheet where this version expects one")
    lines = [f"/* plotly.js v{version.group(1) if version else '?'} (MIT licence): its injected styles, as a file. */"]
    for selector, single, double in _PAIR.findall(match.group(1)):
        expanded = (
            re.sub(r"^,", " ,", selector).replace("X", ".js-plotly-plot .plotly").replace("Y", ".plotly-notifier")
        )
        lines.append(f"{expanded} {{{single or double}}}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(plotly_css(), end="")
