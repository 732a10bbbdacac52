"""vlmtune: what the five scripts (data2csv, csv2json, load_model, train, test) share."""
