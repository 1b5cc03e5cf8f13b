"""Office documents from the ledger: 公文 (.docx, GB/T 9704-2012) and 台账 workbooks (.xlsx).

One module per document kind (bulletin, notice, annual, ledger_xlsx), the shared 公文 layout
(gongwen), the shared workbook helpers (xlsx), the charts as PNG (charts) and the document
number ledger (numbering). Layer: beside reports/ (reads schemas, rules, config and reports;
imported only by workers/)."""
