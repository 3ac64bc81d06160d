"""HTML tables for notebooks (the ``_repr_html_`` of volnet's objects): the rows the terminal prints, as a table.

No colour is set anywhere: text keeps the notebook's own colour and the rules
are ``currentColor`` at a quarter strength, so a table reads the same in
light and dark themes.
"""

from __future__ import annotations

from html import escape

_CELL = ("padding:2px 8px;border-bottom:1px solid color-mix(in srgb, currentColor 25%, transparent);"
         "vertical-align:top;white-space:pre-wrap;text-align:{align}")


def html_table(header, rows, *, title: str = "", right=(), notes: str = "") -> str:
    """A table of text cells (escaped; their newlines and leading spaces kept), a title above and notes below.

    ``right``: indexes of the columns to align right (numbers). ``notes``:
    preformatted text shown under the table (totals, memory, lints).

    >>> html_table(("layer", "params"), [("FC(10)", "7,850")], right=(1,)).count("<td")
    2
    """
    def cell(tag, column, text):
        align = "right" if column in right else "left"
        return f"<{tag} style='{_CELL.format(align=align)}'>{escape(str(text))}</{tag}>"

    head = "".join(cell("th", c, text) for c, text in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", c, text) for c, text in enumerate(row)) + "</tr>" for row in rows)
    parts = ["<div>"]
    if title:
        parts.append(f"<div style='font-weight:bold;margin:4px 0'>{escape(title)}</div>")
    parts.append(f"<table style='border-collapse:collapse'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    if notes:
        parts.append(f"<pre style='margin:6px 0 0 0'>{escape(notes)}</pre>")
    parts.append("</div>")
    return "".join(parts)
