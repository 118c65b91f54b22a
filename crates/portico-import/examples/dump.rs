//! Print the conversion of one file: `cargo run -p portico-import --example dump -- nginx FILE`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = std::path::Path::new(&args[2]);
    let result = if args[1] == "nginx" {
        portico_import::nginx(
            path,
            &portico_import::NginxOptions {
                acme_email: args.get(3).cloned(),
                prefix: None,
            },
        )
    } else {
        portico_import::keepalived(path)
    };
    match result {
        Ok(c) => {
            print!("{}", c.toml);
            eprint!("{}", c.report);
        }
        Err(e) => eprintln!("error: {e}"),
    }
}
