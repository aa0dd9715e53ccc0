"""The composition root: the command line, configuration, logging, and the pipeline that wires
the stages (cdc_reader -> mappers -> query) together. No stage imports it."""
