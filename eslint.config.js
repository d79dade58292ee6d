// Lint (issue 13): typescript-eslint's type-aware rules over everything TypeScript compiles (the browser app
// through its own tsconfig). `npm run lint` runs it with prettier's check and knip.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "coverage/**", "test-artifacts/**", ".troupe/**", ".scratch/**", "bench/results/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // TypeScript checks names itself (typescript-eslint's advice); unused values are tsc's noUnusedLocals.
      "no-undef": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", destructuredArrayIgnorePattern: "^_" }],
      // A variable a closure reads, assigned once after the closure is made, cannot be const.
      "prefer-const": ["error", { ignoreReadBeforeAssign: true }],
    },
  },
  {
    // The browser app is typechecked by tsconfig.ui.json (DOM, JSX), which the root tsconfig leaves out.
    files: ["src/ui/app/**/*.{ts,tsx}"],
    languageOptions: { parserOptions: { projectService: false, project: "./tsconfig.ui.json", tsconfigRootDir: import.meta.dirname } },
  },
  {
    // Tests read HTTP and JSON-RPC answers untyped on purpose: their shape is what they assert.
    files: ["test/**/*.ts"],
    rules: {
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-argument": "off",
      "@typescript-eslint/no-unsafe-call": "off",
      "@typescript-eslint/no-unsafe-return": "off",
      // Test doubles implement async interfaces (agents, executors, stores) with answers they have at hand.
      "@typescript-eslint/require-await": "off",
      // Tests destructure the helpers a fixture returns; none of them reads `this`.
      "@typescript-eslint/unbound-method": "off",
    },
  },
  {
    files: ["**/*.js", "**/*.mjs"],
    ...tseslint.configs.disableTypeChecked,
    rules: { ...tseslint.configs.disableTypeChecked.rules, "no-undef": "off" },
  },
);
