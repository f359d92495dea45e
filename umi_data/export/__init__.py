"""validate / convert: the accept-or-reject decision per record, and the export formats (--to
openai / sharegpt / alpha-umi)."""
