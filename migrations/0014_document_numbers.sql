-- 发文字号 (document numbers) of the 公文 the service writes (docs/operators.md, "Documents"):
-- one series per 机关代字 and year, numbered 1, 2, 3 … without gaps or duplicates.
-- documents.number is allocated in the same transaction that raises the series' last_no (the
-- series row is locked while the number is taken, and the document is written before the
-- commit), so a number is either recorded with its document or not taken at all.

CREATE TABLE document_series (
    prefix   text NOT NULL,                     -- 机关代字, e.g. 西法督
    year     integer NOT NULL,
    last_no  integer NOT NULL DEFAULT 0 CHECK (last_no >= 0),
    PRIMARY KEY (prefix, year)
);

CREATE TABLE documents (
    prefix       text NOT NULL,
    year         integer NOT NULL,
    number       integer NOT NULL CHECK (number >= 1),
    doc_no       text NOT NULL UNIQUE,          -- 西法督〔2027〕3号
    kind         text NOT NULL CHECK (kind IN ('bulletin', 'notice', 'annual_report')),
    subject      text NOT NULL,                 -- what the document is about, e.g. the inspection id
    title        text NOT NULL,
    issued_on    date NOT NULL,                 -- 成文日期
    sha256       text NOT NULL DEFAULT '',      -- of the last file written
    issued_at    timestamptz NOT NULL DEFAULT now(),
    rendered_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (prefix, year, number),
    UNIQUE (kind, subject),                     -- a document keeps its number when written again
    FOREIGN KEY (prefix, year) REFERENCES document_series (prefix, year)
);
