use mp_runtime::process_fn;

#[process_fn]
async fn fetch(url: String) -> String {
    url
}

fn main() {}
