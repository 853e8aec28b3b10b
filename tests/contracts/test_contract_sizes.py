"""Every deployable contract keeps at least 10 % of the EIP-170 code-size limit free.

EIP-170 caps runtime code at 24 576 bytes; the project keeps 10 % of it (2 457
bytes) as room to grow, so a contract that nears the limit is split by concern
(escrow in JobMarket, the vote in VerifierCourt) before it has to be.
"""

from __future__ import annotations

import pytest

EIP170 = 24_576
LIMIT = EIP170 * 9 // 10  # 22 118 bytes

DEPLOYABLE = ["StakeManager", "GreenRegistry", "VerifierCourt", "JobMarket", "AuditRules"]


@pytest.mark.parametrize("name", DEPLOYABLE)
def test_runtime_code_leaves_ten_percent_of_eip170_free(project, name):
    code = project.get_contract(name).contract_type.runtime_bytecode.bytecode
    size = (len(code) - 2) // 2
    print(f"{name}: {size} bytes, {100 * (EIP170 - size) / EIP170:.1f} % of EIP-170 free")
    assert 0 < size <= LIMIT, f"{name} is {size} bytes, above {LIMIT} (90 % of EIP-170)"
