#include "config.h"
typedef int pf_placeholder_;
