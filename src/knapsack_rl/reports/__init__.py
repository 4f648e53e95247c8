"""Reports: HTML pages, tables and plots (:mod:`.html`), and the simulator's
report (:mod:`.simulation`). matplotlib is imported only when a plot is drawn."""

from knapsack_rl.reports.html import format_table, html_table, save_figure, write_html

__all__ = ["format_table", "html_table", "save_figure", "write_html"]
