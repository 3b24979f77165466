// llmblocks/autograd.hpp — the reference autograd: Variable, no_grad, backward, gradcheck.
#pragma once

#include "llmblocks/autograd/gradcheck.hpp"
#include "llmblocks/autograd/variable.hpp"
