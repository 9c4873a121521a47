fn main() {
    std::process::exit(rsim_train::app::main());
}
