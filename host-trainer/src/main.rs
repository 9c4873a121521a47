fn main() {
    #[cfg(feature = "train")]
    std::process::exit(rsim_train::cli::main());
    #[cfg(not(feature = "train"))]
    {
        eprintln!("rsim: built without the `train` feature (no libtorch): pretrain and probe are unavailable");
        std::process::exit(2);
    }
}
