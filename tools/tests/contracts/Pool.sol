// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

interface IERC20 {
    function transfer(address to, uint256 value) external returns (bool);
    function transferFrom(address from, address to, uint256 value) external returns (bool);
}

/// Minimal constant-product AMM (Uniswap-v2-like, 0.3% fee, no LP tokens).
contract Pool {
    address public immutable token0;
    address public immutable token1;
    uint256 public reserve0;
    uint256 public reserve1;

    event Swap(address indexed sender, address indexed tokenIn, uint256 amountIn, uint256 amountOut);

    constructor(address token0_, address token1_) {
        require(token0_ != token1_, "identical tokens");
        token0 = token0_;
        token1 = token1_;
    }

    function getReserves() external view returns (uint256, uint256) {
        return (reserve0, reserve1);
    }

    function addLiquidity(uint256 amount0, uint256 amount1) external {
        require(IERC20(token0).transferFrom(msg.sender, address(this), amount0), "transfer0");
        require(IERC20(token1).transferFrom(msg.sender, address(this), amount1), "transfer1");
        reserve0 += amount0;
        reserve1 += amount1;
    }

    function getAmountOut(uint256 amountIn, uint256 reserveIn, uint256 reserveOut) public pure returns (uint256) {
        uint256 amountInWithFee = amountIn * 997;
        return (amountInWithFee * reserveOut) / (reserveIn * 1000 + amountInWithFee);
    }

    function swap(address tokenIn, uint256 amountIn, uint256 minOut) external returns (uint256 out) {
        bool zeroForOne;
        if (tokenIn == token0) {
            zeroForOne = true;
        } else {
            require(tokenIn == token1, "bad token");
        }
        (uint256 reserveIn, uint256 reserveOut) = zeroForOne ? (reserve0, reserve1) : (reserve1, reserve0);
        require(amountIn > 0 && reserveIn > 0 && reserveOut > 0, "no liquidity");

        require(IERC20(tokenIn).transferFrom(msg.sender, address(this), amountIn), "transferIn");
        out = getAmountOut(amountIn, reserveIn, reserveOut);
        require(out >= minOut, "slippage");
        require(IERC20(zeroForOne ? token1 : token0).transfer(msg.sender, out), "transferOut");

        if (zeroForOne) {
            reserve0 = reserveIn + amountIn;
            reserve1 = reserveOut - out;
        } else {
            reserve1 = reserveIn + amountIn;
            reserve0 = reserveOut - out;
        }
        emit Swap(msg.sender, tokenIn, amountIn, out);
    }
}
