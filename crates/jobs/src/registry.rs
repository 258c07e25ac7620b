//! The merchant registry: who the merchants are and where their payouts go. CSV
//! (`merchant_id,name,account,bank` with a header) or a JSON array of the same fields. Every
//! problem names the file and line, because ops will be fixing this file by hand.

use std::collections::BTreeMap;
use std::path::Path;

use clearhouse_domain::parse::is_valid_merchant_id;
use clearhouse_domain::{Merchant, Payee};
use compact_str::CompactString;
use serde::Deserialize;

use crate::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    merchant_id: String,
    name: String,
    account: String,
    bank: String,
}

/// Validates an account holder with the same rules as refund payees.
pub fn validate_account(name: &str, account: &str, bank: &str) -> Result<Payee, String> {
    Payee::validated(name, account, bank).map_err(|e| e.to_string())
}

/// Loads a registry file (`.json` or CSV).
pub fn load(path: &Path) -> Result<BTreeMap<CompactString, Merchant>, ConfigError> {
    let fail = |line: usize, problem: String| ConfigError::Registry { path: path.to_owned(), line, problem };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let rows: Vec<(usize, Row)> = if path.extension().is_some_and(|e| e == "json") {
        let rows: Vec<Row> = serde_json::from_str(&text).map_err(|e| {
            let message = crate::limits::without_values(&e.to_string());
            fail(e.line(), message.rsplit_once(" at line ").map_or(message.clone(), |(m, _)| m.to_owned()))
        })?;
        rows.into_iter().map(|r| (0, r)).collect()
    } else {
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
        let mut rows = Vec::new();
        for record in reader.deserialize::<Row>() {
            let row = record.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line() as usize);
                fail(line, crate::limits::without_values(&e.to_string()))
            })?;
            let line = rows.len() + 2;
            rows.push((line, row));
        }
        rows
    };
    let mut merchants = BTreeMap::new();
    for (line, row) in rows {
        if !is_valid_merchant_id(&row.merchant_id) {
            return Err(fail(
                line,
                format!("merchant_id {:?} is not 1-32 characters of [A-Za-z0-9_-]", row.merchant_id),
            ));
        }
        let account = validate_account(&row.name, &row.account, &row.bank)
            .map_err(|e| fail(line, format!("merchant {}: {e}", row.merchant_id)))?;
        let id = CompactString::from(row.merchant_id.as_str());
        if merchants.insert(id.clone(), Merchant { id, account }).is_some() {
            return Err(fail(line, format!("merchant {} is listed twice", row.merchant_id)));
        }
    }
    Ok(merchants)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    #[test]
    fn loads_csv_and_json() {
        let (_d, csv) = write("m.csv", "merchant_id,name,account,bank\nM1, Shop One ,6222000011112222,BKCHCNBJ\n");
        let merchants = load(&csv).expect("csv");
        assert_eq!(merchants["M1"].account.name, "Shop One");
        let (_d, json) = write(
            "m.json",
            r#"[{"merchant_id":"M2","name":"Two","account":"DE89370400440532013000","bank":"COBADEFF"}]"#,
        );
        assert_eq!(load(&json).expect("json")["M2"].account.bank, "COBADEFF");
    }

    #[test]
    fn problems_name_the_line() {
        let (_d, csv) = write("m.csv", "merchant_id,name,account,bank\nM1,A,1,B\nM1,A,2,B\n");
        let err = load(&csv).expect_err("duplicate");
        assert!(err.to_string().contains("m.csv line 3: merchant M1 is listed twice"), "{err}");
        let (_d, csv) = write("m.csv", "merchant_id,name,account,bank\nM 1,A,1,B\n");
        assert!(load(&csv).expect_err("bad id").to_string().contains("line 2: merchant_id \"M 1\""));
    }
}
