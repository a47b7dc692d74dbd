"""The command-line flags of the scripts, defined once, in groups.

TF-Slim's flag names and defaults are kept so that existing commands run
unchanged. Closed choices are enums listing their valid values (`--model_name`
in every script); numeric flags have validators, so a bad value stops the
script (exit status 2) with a message naming the flag before anything is
written. Scripts call the `define_*` groups they need at import, read `FLAGS`
only in `main()`, and hand plain values to the library:

  from absl import flags
  from slimkit import flags as slim_flags
  slim_flags.define_train_flags()
  flags.adopt_module_key_flags(slim_flags)   # --help lists them
  ...
  if __name__ == '__main__':
    app.run(main, flags_parser=slim_flags.parse_flags)

Nothing here imports TensorFlow: `--help` and every flag error come before
a script imports it (in `main()`). The enums' values come from the
TensorFlow-free registries (`choices`). The groups live by concern:

  core       parsing, failing, flag files (`flags.txt`)
  model      --model_name, --model_options, preprocessing, image size
  data       datasets, input, augmentation, the converters' flags
  training   deployment, optimizer, learning rate, training, the study's
  inference  evaluation, export (SavedModel, TFLite), classification
  values     flag values turned into the library's arguments

`--master` (a TF 1 session target) is accepted for old commands but does
nothing; `obsolete_flag_warnings()` says what replaces it.
"""

from slimkit.flags.core import (  # noqa: F401
    FLAGS, MODULE, OBSOLETE, fail, obsolete_flag_warnings, parse_flags,
    read_flagfile_value, split_scopes, write_flagfile)
from slimkit.flags.data import (  # noqa: F401
    define_augmentation_flags, define_build_imagenet_flags,
    define_dataset_flags, define_download_flags, define_input_flags)
from slimkit.flags.inference import (  # noqa: F401
    define_classify_flags, define_eval_flags, define_export_flags,
    define_tflite_flags, define_tflite_model_flag)
from slimkit.flags.model import (  # noqa: F401
    define_model_flags, define_model_name_flag, define_model_options_flag,
    define_preprocessing_name_flag, define_print_model_flags)
from slimkit.flags.training import (  # noqa: F401
    STUDY_FLAGS, define_deployment_flags, define_fine_tuning_flags,
    define_learning_rate_flags, define_moving_average_flag,
    define_optimizer_flags, define_performance_flags, define_study_flags,
    define_train_flags, define_training_flags, define_validation_flags,
    training_flags)
from slimkit.flags.values import (  # noqa: F401
    fail_on_input_error, model_options, optimizer_hparams, randaugment,
    split_or_fail)
